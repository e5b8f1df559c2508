"""Why one flow is allowed or denied: `envisolation explain SRC DST [--port PROTO/PORT]`. Pure.

For one pair it says which policies select the source for egress and the destination for
ingress, which rule of which policy admits the flow (or that none does, and whether the
namespace's default-deny is among the policies that isolate it), and, for a flow between
two segments, whether the spec declares it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envisolation.analysis.conns import ALL, Conns
from envisolation.analysis.netpol import External, Workload, pod_ips, workload_name
from envisolation.analysis.reachability import (
    Cluster,
    owners_of,
    port_conns,
    rule_admits_peer,
)
from envisolation.analysis.verify import declared
from envisolation.policy.render import NamespaceState, RenderContext, decide
from envisolation.spec import constants as c
from envisolation.spec.model import EnvironmentIsolation, InvalidSpec, NamespaceFacts

Endpoint = Workload | External


@dataclass
class Side:
    direction: str  # egress (at the source) or ingress (at the destination)
    endpoint: Endpoint
    isolating: list[str] = field(default_factory=list)  # policies selecting it this way
    admitting: list[str] = field(default_factory=list)  # "policy rule #i: ports"
    conns: Conns = ALL

    def lines(self) -> list[str]:
        who = "source" if self.direction == "egress" else "destination"
        if isinstance(self.endpoint, External):
            return [f"{self.direction}: the {who} is outside the cluster; no policy applies there"]
        if not self.isolating:
            return [f"{self.direction}: no policy selects the {who} for {self.direction}: "
                    "everything is allowed"]  # fmt: skip
        out = [f"{self.direction}: selected by {', '.join(self.isolating)}"]
        if self.admitting:
            out += [f"  admitted by {a}" for a in self.admitting]
        else:
            deny = [p for p in self.isolating if p.endswith("/" + c.POLICY_DEFAULT_DENY)]
            why = f" (the default-deny {deny[0]} isolates it)" if deny else ""
            out.append(f"  no rule admits this flow: denied{why}")
        return out


@dataclass
class Explanation:
    src: Endpoint
    dst: Endpoint
    probe: Conns | None
    egress: Side
    ingress: Side
    segments: list[str]

    @property
    def conns(self) -> Conns:
        both = self.egress.conns & self.ingress.conns
        return both & self.probe if self.probe is not None else both

    @property
    def allowed(self) -> bool:
        return bool(self.conns)

    def text(self) -> str:
        verdict = f"ALLOWED: {self.conns}" if self.allowed else "DENIED"
        port = f" on {self.probe}" if self.probe is not None else ""
        lines = [f"{self.src} -> {self.dst}{port}: {verdict}", *self.egress.lines(),
                 *self.ingress.lines(), *self.segments]  # fmt: skip
        return "\n".join(lines) + "\n"


def _side(cluster: Cluster, direction: str, me: Endpoint, other: Endpoint,
          dst: Endpoint, probe: Conns | None) -> Side:  # fmt: skip
    side = Side(direction, me)
    if isinstance(me, External):
        return side
    selecting = [p for p in cluster.policies if p.selects(me)
                 and (p.egress if direction == "egress" else p.ingress) is not None]  # fmt: skip
    if not selecting:
        return side
    side.isolating = [f"{p.namespace}/{p.name}" for p in selecting]
    out = Conns()
    for pol in selecting:
        rules = (pol.egress if direction == "egress" else pol.ingress) or ()
        for i, rule in enumerate(rules):
            if not rule_admits_peer(cluster, pol, rule, other):
                continue
            conns = port_conns(rule.ports, dst if isinstance(dst, Workload) else None)
            hit = conns & probe if probe is not None else conns
            if hit:
                side.admitting.append(f"{pol.namespace}/{pol.name} {direction}[{i}]: {hit}")
                out = out | conns
    side.conns = out
    return side


Isolations = Sequence[EnvironmentIsolation]
Namespaces = Mapping[str, NamespaceFacts]


def _segment_of(
    ns: str, isolations: Isolations, namespaces: Namespaces, ctx: RenderContext
) -> tuple[str, str] | None:
    facts = namespaces.get(ns)
    if facts is None:
        return None
    d = decide(facts, isolations, ctx)
    if d.owner is None or d.segment is None or d.state is NamespaceState.UNMANAGED:
        return None
    return d.owner, d.segment


def segment_lines(
    src: Endpoint, dst: Endpoint, isolations: Isolations, namespaces: Namespaces, ctx: RenderContext
) -> list[str]:
    if not isinstance(src, Workload) or not isinstance(dst, Workload) or not isolations:
        return []
    a = _segment_of(src.namespace, isolations, namespaces, ctx)
    b = _segment_of(dst.namespace, isolations, namespaces, ctx)
    if a is None or b is None or a[0] != b[0]:
        return []
    iso = next(i for i in isolations if i.name == a[0])
    if a[1] == b[1]:
        how = "allows" if iso.same_segment else "does not allow"
        return [f"segments: both in {a[1]} ({iso.name}); sameSegment {how} it"]
    if declared(iso, a[1], b[1]):
        return [f"segments: {a[1]} -> {b[1]} is declared in {iso.name}'s spec"]
    return [f"segments: {a[1]} -> {b[1]} is NOT declared in {iso.name}'s spec: "
            "if allowed, this path is an exposure"]  # fmt: skip


def resolve(text: str, cluster: Cluster, objects: Sequence[Mapping[str, Any]]) -> Endpoint:
    """`ns/workload`, `ns/pod` or an IPv4 or IPv6 address (a pod's, or one outside the
    cluster)."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        addr = None
    if addr is not None:
        for o in objects:
            if o.get("kind") == "Pod" and addr in pod_ips(o):
                return _workload_of(o, cluster, objects)
        return External(int(addr), int(addr), addr.version)
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name:
        raise InvalidSpec(f"{text}: expected NAMESPACE/NAME (a workload or a pod) or an IP address")
    for w in cluster.workloads:
        if w.namespace == ns and w.name == name:
            return w
    for o in objects:
        meta = o.get("metadata") or {}
        if (
            o.get("kind") == "Pod"
            and meta.get("name") == name
            and (meta.get("namespace") or "default") == ns
        ):
            return _workload_of(o, cluster, objects)
    raise InvalidSpec(f"{text}: no workload or pod of that name in namespace {ns}")


def _workload_of(pod: Mapping[str, Any], cluster: Cluster,
                 objects: Sequence[Mapping[str, Any]]) -> Workload:  # fmt: skip
    ns = str((pod.get("metadata") or {}).get("namespace") or "default")
    kind, name = workload_name(pod, owners_of(objects))
    for w in cluster.workloads:
        if (w.namespace, w.kind, w.name) == (ns, kind, name):
            return w
    raise InvalidSpec(f"{ns}/{name}[{kind}]: not found among the workloads read")


def explain(cluster: Cluster, src: Endpoint, dst: Endpoint, probe: Conns | None,
            isolations: Sequence[EnvironmentIsolation], namespaces: Mapping[str, NamespaceFacts],
            ctx: RenderContext) -> Explanation:  # fmt: skip
    return Explanation(
        src, dst, probe,
        _side(cluster, "egress", src, dst, dst, probe),
        _side(cluster, "ingress", dst, src, dst, probe),
        segment_lines(src, dst, isolations, namespaces, ctx),
    )  # fmt: skip


def parse_port(text: str) -> Conns:
    """`TCP/80`, `udp/53` or `80` (TCP)."""
    proto, sep, port = text.upper().partition("/")
    if not sep:
        proto, port = "TCP", proto
    if proto not in ("TCP", "UDP", "SCTP") or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidSpec(f"--port {text}: expected PROTO/PORT, e.g. TCP/80 or UDP/53")
    return Conns.of(proto, int(port), int(port))
