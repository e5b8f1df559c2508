"""NetworkPolicies and workloads, parsed for analysis (reachability.py says what they mean).

Pure. A NetworkPolicy body becomes a Policy (selectors parsed, ipBlocks as address
ranges of their family, IPv4 or IPv6, ports with their protocol), a Pod or workload body
a Workload (labels of its pod template, named container ports). A body that cannot be
read raises InvalidSpec with its field path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envisolation.spec.fields import parse_selector
from envisolation.spec.model import InvalidSpec
from envisolation.spec.selectors import LabelSelector

IPV4_MAX = 2**32 - 1
IPV6_MAX = 2**128 - 1
FAMILY_MAX = {4: IPV4_MAX, 6: IPV6_MAX}
Block = tuple[int, int, int]  # (IP version, first address, last address), as integers


def address(version: int, value: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


WORKLOAD_KINDS = (
    "Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob",
    "ReplicationController",
)  # fmt: skip


@dataclass(frozen=True)
class ContainerPort:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Workload:
    namespace: str
    name: str
    kind: str
    labels: tuple[tuple[str, str], ...]
    ports: tuple[ContainerPort, ...] = ()

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}[{self.kind}]"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class External:
    """A range of addresses outside the cluster, of one family (IPv4 or IPv6)."""

    first: int
    last: int
    version: int = 4

    def __str__(self) -> str:
        v = self.version
        return f"{address(v, self.first)}-{address(v, self.last)}[External]"


@dataclass(frozen=True)
class PortRule:
    protocol: str
    port: int | str | None
    end_port: int | None


@dataclass(frozen=True)
class Peer:
    pod_selector: LabelSelector | None
    namespace_selector: LabelSelector | None
    blocks: tuple[Block, ...] | None  # address ranges, for ipBlock peers


@dataclass(frozen=True)
class Rule:
    peers: tuple[Peer, ...] | None  # None: every peer
    ports: tuple[PortRule, ...] | None  # None: every port


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: LabelSelector
    ingress: tuple[Rule, ...] | None  # None: this policy does not isolate ingress
    egress: tuple[Rule, ...] | None

    def selects(self, w: Workload) -> bool:
        return w.namespace == self.namespace and self.pod_selector.matches(w.label_map)


# -- parsing --------------------------------------------------------------------------------


def _block_ranges(block: Mapping[str, Any], path: str) -> tuple[Block, ...]:
    """cidr minus every except, as ranges of cidr's family (an except of the other family
    leaves nothing out: it cannot be inside cidr)."""
    excepts = _items(block.get("except"), f"{path}.except")  # its own message, not below
    try:
        net = ipaddress.ip_network(str(block.get("cidr")), strict=False)
        holes = [ipaddress.ip_network(str(e), strict=False) for e in excepts]
    except ValueError as e:
        raise InvalidSpec(f"{path}: {e}") from e
    ranges = [(int(net.network_address), int(net.broadcast_address))]
    for h in holes:
        if h.version != net.version:
            continue
        lo, hi = int(h.network_address), int(h.broadcast_address)
        cut: list[tuple[int, int]] = []
        for a, b in ranges:
            if hi < a or lo > b:
                cut.append((a, b))
                continue
            if a < lo:
                cut.append((a, lo - 1))
            if hi < b:
                cut.append((hi + 1, b))
        ranges = cut
    return tuple((net.version, a, b) for a, b in ranges)


def _obj(v: Any, path: str) -> Mapping[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise InvalidSpec(f"{path}: must be an object, got {type(v).__name__}")
    return v


def _items(v: Any, path: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise InvalidSpec(f"{path}: must be a list, got {type(v).__name__}")
    return v


def _port(v: Any, path: str, named: bool = True) -> int | str | None:
    """A port (a number or, if `named`, a container port's name), or None."""
    if (
        v is None
        or (named and isinstance(v, str))
        or (isinstance(v, int) and not isinstance(v, bool))
    ):
        return v
    raise InvalidSpec(f"{path}: must be a number" + (" or a port name" if named else ""))


def _rules(raw: Any, key: str, path: str) -> tuple[Rule, ...]:
    out = []
    for i, item in enumerate(_items(raw, path)):
        p = f"{path}[{i}]"
        r = _obj(item, p)
        peers = None
        if r.get(key):
            parsed = []
            for j, raw_peer in enumerate(_items(r[key], f"{p}.{key}")):
                pp = f"{p}.{key}[{j}]"
                peer = _obj(raw_peer, pp)
                blocks = (
                    _block_ranges(_obj(peer["ipBlock"], f"{pp}.ipBlock"), f"{pp}.ipBlock")
                    if "ipBlock" in peer
                    else None
                )
                parsed.append(
                    Peer(
                        parse_selector(peer["podSelector"], f"{pp}.podSelector")
                        if "podSelector" in peer
                        else None,
                        parse_selector(peer["namespaceSelector"], f"{pp}.namespaceSelector")
                        if "namespaceSelector" in peer
                        else None,
                        blocks,
                    )
                )
            peers = tuple(parsed)
        ports = None
        if r.get("ports"):
            rules = []
            for j, raw_port in enumerate(_items(r["ports"], f"{p}.ports")):
                x = _obj(raw_port, f"{p}.ports[{j}]")
                end = _port(x.get("endPort"), f"{p}.ports[{j}].endPort", named=False)
                rules.append(
                    PortRule(
                        str(x.get("protocol") or "TCP"),
                        _port(x.get("port"), f"{p}.ports[{j}].port"),
                        int(end) if end is not None else None,
                    )
                )
            ports = tuple(rules)
        out.append(Rule(peers, ports))
    return tuple(out)


def parse_policy(body: Mapping[str, Any]) -> Policy:
    meta = _obj(body.get("metadata"), "metadata")
    ns = str(meta.get("namespace") or "default")
    name = str(meta.get("name") or "")
    path = f"NetworkPolicy {ns}/{name}: spec"
    spec = _obj(body.get("spec"), path)
    types = _items(spec.get("policyTypes"), f"{path}.policyTypes")
    if not types:
        types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    return Policy(
        ns,
        name,
        parse_selector(spec.get("podSelector") or {}, f"{path}.podSelector"),
        _rules(spec.get("ingress"), "from", f"{path}.ingress") if "Ingress" in types else None,
        _rules(spec.get("egress"), "to", f"{path}.egress") if "Egress" in types else None,
    )


def pod_ips(body: Mapping[str, Any]) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """A Pod's addresses (status.podIP and every status.podIPs entry), of both families;
    what does not parse as an address is left out."""
    status = body.get("status") or {}
    if not isinstance(status, Mapping):
        return set()
    texts = [status.get("podIP")] + [x.get("ip") for x in status.get("podIPs") or ()
                                     if isinstance(x, Mapping)]  # fmt: skip
    out = set()
    for t in texts:
        try:
            out.add(ipaddress.ip_address(str(t)))
        except ValueError:
            continue
    return out


def pod_template(body: Mapping[str, Any]) -> Mapping[str, Any]:
    kind = body.get("kind")
    spec = body.get("spec") or {}
    if kind == "Pod":
        return body
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    return spec.get("template") or {}


Owners = Mapping[tuple[str, str, str], tuple[str, str]]  # (ns, kind, name) -> its owner


def controller_of(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (kind, name) of an object's controlling owner, if it has one."""
    for o in meta.get("ownerReferences") or []:
        if isinstance(o, Mapping) and o.get("controller") and o.get("kind") and o.get("name"):
            return str(o["kind"]), str(o["name"])
    return None


def workload_name(body: Mapping[str, Any], owners: Owners) -> tuple[str, str]:
    """(kind, name) an object is listed as, as netpol-analyzer's `list` names endpoints.

    A pod is named after its controlling owner (a pod without one, or one owned by its
    Node, a static pod, is the pod itself); an owner that is itself owned by an object of
    the input is followed up the chain (a ReplicaSet to its Deployment, a Job to its
    CronJob); where the chain leaves the input, the last owner known names it.
    """
    meta = body.get("metadata") or {}
    ns = str(meta.get("namespace") or "default")
    kind, name = str(body.get("kind")), str(meta.get("name") or "")
    owner = controller_of(meta)
    pod_owned = kind == "Pod" and owner is not None and owner[0] != "Node"
    if owner is not None and (pod_owned or (ns, kind, name) in owners):
        kind, name = owner
    seen = {(kind, name)}
    while (ns, kind, name) in owners:
        kind, name = owners[(ns, kind, name)]
        if (kind, name) in seen:  # a cycle of owner references: stop where it repeats
            break
        seen.add((kind, name))
    return kind, name


def parse_workload(body: Mapping[str, Any], owners: Owners | None = None) -> Workload:
    meta = body.get("metadata") or {}
    kind, name = workload_name(body, owners or {})
    tmpl = pod_template(body)
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    ports = []
    for c in ((tmpl.get("spec") or {}).get("containers") or []) + (
        (tmpl.get("spec") or {}).get("initContainers") or []
    ):
        for p in c.get("ports") or []:
            if "containerPort" in p:
                ports.append(
                    ContainerPort(
                        str(p.get("name") or ""),
                        int(p["containerPort"]),
                        str(p.get("protocol") or "TCP"),
                    )
                )
    return Workload(
        str(meta.get("namespace") or "default"),
        name,
        kind,
        tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        tuple(ports),
    )
