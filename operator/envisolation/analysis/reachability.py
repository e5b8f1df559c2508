"""networking.k8s.io/v1 NetworkPolicy semantics: who may reach whom, on which ports.

Pure. Written from the Kubernetes API reference:
- a pod is isolated for a direction when some policy selecting it has that policyType
  (explicit, or inferred: Ingress always, Egress when the policy has egress rules);
- an isolated pod admits the union of the rules of every policy selecting it;
- a connection needs the source's egress and the destination's ingress;
- a rule with no (or empty) `from`/`to` matches every peer; no (or empty) `ports`, every
  port; `ingress: []` admits nothing, `[{}]` everything;
- a peer's podSelector alone means pods of the policy's namespace, namespaceSelector
  alone every pod of the selected namespaces (`kubernetes.io/metadata.name` is implied on
  every namespace), both together the selected pods of the selected namespaces;
- ipBlock (cidr minus except) matches addresses outside the cluster only, of its own
  family: an IPv4 block never covers an IPv6 address, nor the reverse;
- a port without protocol is TCP; endPort makes a range; a named port resolves against
  the destination pod's container ports of the same protocol, and is dropped if none.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envisolation.analysis.conns import ALL, NONE, Conns
from envisolation.analysis.netpol import (
    FAMILY_MAX,
    WORKLOAD_KINDS,
    External,
    Peer,
    Policy,
    PortRule,
    Rule,
    Workload,
    controller_of,
    parse_policy,
    parse_workload,
    pod_ips,
)


def port_conns(ports: Sequence[PortRule] | None, dst: Workload | None) -> Conns:
    """The connections a rule's ports allow towards `dst` (None: an external address)."""
    if ports is None:
        return ALL
    out = NONE
    for p in ports:
        if p.port is None:
            out = out | Conns.of(p.protocol)
        elif isinstance(p.port, int) or str(p.port).isdigit():
            lo = int(p.port)
            out = out | Conns.of(p.protocol, lo, int(p.end_port) if p.end_port else lo)
        elif dst is not None:
            for cp in dst.ports:
                if cp.name == p.port and cp.protocol == p.protocol:
                    out = out | Conns.of(p.protocol, cp.port, cp.port)
    return out


def peer_matches(
    peer: Peer, policy_ns: str, w: Workload, ns_labels: Mapping[str, Mapping[str, str]]
) -> bool:
    if peer.blocks is not None:
        return False
    if peer.namespace_selector is not None:
        labels = ns_labels.get(w.namespace, {})  # build() lists every workload's namespace
        if not peer.namespace_selector.matches(labels):
            return False
    elif w.namespace != policy_ns:
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(w.label_map)


def peer_covers(peer: Peer, ext: External) -> bool:
    return peer.blocks is not None and any(
        v == ext.version and lo <= ext.first and ext.last <= hi for v, lo, hi in peer.blocks
    )


def rule_admits_peer(cluster: Cluster, pol: Policy, rule: Rule, other: Workload | External) -> bool:
    """Does a rule of `pol` name `other` among its peers (any peer when it names none)?"""
    if rule.peers is None:
        return True
    if isinstance(other, External):
        return any(peer_covers(peer, other) for peer in rule.peers)
    return any(peer_matches(peer, pol.namespace, other, cluster.namespaces) for peer in rule.peers)


@dataclass(frozen=True)
class Cluster:
    workloads: tuple[Workload, ...]
    policies: tuple[Policy, ...]
    namespaces: Mapping[str, Mapping[str, str]]  # name -> labels (with the implied name label)
    families: tuple[int, ...] = (4,)  # address families whose external ranges are listed


def _families(policies: Iterable[Policy], objects: Iterable[Mapping[str, Any]]) -> tuple[int, ...]:
    """IPv4 always; IPv6 too when the input shows a dual-stack or IPv6 cluster: an IPv6
    ipBlock in some policy, or a pod with an IPv6 address (status.podIP or podIPs)."""
    for p in policies:
        for rules in (p.ingress, p.egress):
            for r in rules or ():
                for peer in r.peers or ():
                    if any(v == 6 for v, _, _ in peer.blocks or ()):
                        return (4, 6)
    for obj in objects:
        if obj.get("kind") == "Pod" and any(ip.version == 6 for ip in pod_ips(obj)):
            return (4, 6)
    return (4,)


def owners_of(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], tuple[str, str]]:
    """Who controls each workload object of the input, for naming the pods they own."""
    owners: dict[tuple[str, str, str], tuple[str, str]] = {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        owner = controller_of(meta)
        if obj.get("kind") in WORKLOAD_KINDS and obj.get("kind") != "Pod" and owner:
            ns = str(meta.get("namespace") or "default")
            owners[(ns, str(obj["kind"]), str(meta.get("name")))] = owner
    return owners


def build(objects: Iterable[Mapping[str, Any]]) -> tuple[Cluster, list[str]]:
    """Objects -> a Cluster, and notes about what was skipped."""
    objects = list(objects)
    owners = owners_of(objects)
    workloads: dict[str, Workload] = {}
    policies = []
    namespaces: dict[str, dict[str, str]] = {}
    notes = []
    for obj in objects:
        kind = obj.get("kind")
        if kind == "NetworkPolicy":
            policies.append(parse_policy(obj))
        elif kind == "Namespace":
            meta = obj.get("metadata") or {}
            name = str(meta.get("name"))
            namespaces[name] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": name}
        elif kind in WORKLOAD_KINDS:
            w = parse_workload(obj, owners)
            workloads.setdefault(str(w), w)
        else:
            notes.append(f"skipping {kind} {(obj.get('metadata') or {}).get('name', '')}")
    for w in workloads.values():  # a namespace known only from its workloads
        namespaces.setdefault(w.namespace, {"kubernetes.io/metadata.name": w.namespace})
    ordered = tuple(sorted(workloads.values(), key=str))
    families = _families(policies, objects)
    return Cluster(ordered, tuple(policies), namespaces, families), notes


def _edges(cluster: Cluster, key: str, version: int) -> list[int]:
    edges = {0, FAMILY_MAX[version] + 1}
    for p in cluster.policies:
        for r in getattr(p, key) or ():
            for peer in r.peers or ():
                for v, lo, hi in peer.blocks or ():
                    if v == version:
                        edges.update((lo, hi + 1))
    return sorted(edges)


def externals(cluster: Cluster, key: str) -> list[External]:
    """The address space outside the cluster, per family, split at every ipBlock edge of
    the `key` (ingress or egress) rules: within one range every rule decides alike."""
    out: list[External] = []
    for v in cluster.families:
        e = _edges(cluster, key, v)
        out.extend(External(a, b - 1, v) for a, b in itertools.pairwise(e))
    return out


def _allowed(
    rules: Iterable[tuple[Policy, Rule]],
    other: Workload | External,
    dst: Workload | None,
    cluster: Cluster,
) -> Conns:
    out = NONE
    for pol, rule in rules:
        if rule_admits_peer(cluster, pol, rule, other):
            out = out | port_conns(rule.ports, dst)
            if out.is_all:
                break
    return out


@dataclass(frozen=True)
class Connection:
    src: Workload | External
    dst: Workload | External
    conns: Conns


def connections(cluster: Cluster) -> Iterator[Connection]:
    """Every (src, dst) pair with some allowed connection (no self pairs, no IP to IP)."""
    ws = cluster.workloads
    ingress: dict[Workload, list[tuple[Policy, Rule]] | None] = {}
    egress: dict[Workload, list[tuple[Policy, Rule]] | None] = {}
    by_ns: dict[str, list[Policy]] = {}
    for p in cluster.policies:
        by_ns.setdefault(p.namespace, []).append(p)
    for w in ws:
        sel = [p for p in by_ns.get(w.namespace, []) if p.selects(w)]
        ing = [p for p in sel if p.ingress is not None]
        eg = [p for p in sel if p.egress is not None]
        ingress[w] = [(p, r) for p in ing for r in p.ingress or ()] if ing else None
        egress[w] = [(p, r) for p in eg for r in p.egress or ()] if eg else None
    for ext in externals(cluster, "ingress"):
        for dst in ws:
            rules = ingress[dst]
            c = ALL if rules is None else _allowed(rules, ext, dst, cluster)
            if c:
                yield Connection(ext, dst, c)
    ext_dst = externals(cluster, "egress")
    for src in ws:
        out_rules = egress[src]
        for dst in ws:
            if dst is src:
                continue
            e = ALL if out_rules is None else _allowed(out_rules, dst, dst, cluster)
            if not e:
                continue
            in_rules = ingress[dst]
            i = ALL if in_rules is None else _allowed(in_rules, src, dst, cluster)
            c = e & i
            if c:
                yield Connection(src, dst, c)
        for out in ext_dst:
            c = ALL if out_rules is None else _allowed(out_rules, out, None, cluster)
            if c:
                yield Connection(src, out, c)


def connlist(cluster: Cluster) -> list[Connection]:
    """Sorted by byte order of the printed source, then destination."""
    return sorted(connections(cluster), key=lambda c: (str(c.src).encode(), str(c.dst).encode()))
