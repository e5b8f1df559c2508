"""Is each EnvironmentIsolation really isolating? Exposures and a segment matrix (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from envisolation.analysis.exposure import DEFAULT_WIDE, Exposure, Member, WidePrefixes, find
from envisolation.analysis.netpol import WORKLOAD_KINDS, Policy, parse_policy, pod_template
from envisolation.policy.plan import owned
from envisolation.policy.render import NamespaceState, RenderContext, decide
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts

OWNED = (NamespaceState.ISOLATED, NamespaceState.AUDIT, NamespaceState.OFF, NamespaceState.CONFLICT)


@dataclass(frozen=True)
class Report:
    isolation: str
    segments: tuple[str, ...]
    namespaces: int
    matrix: Mapping[tuple[str, str], str]  # (source, destination) -> allowed | exposed | isolated
    exposures: tuple[Exposure, ...]
    not_isolatable: tuple[str, ...] = ()  # hostNetwork pods/workloads in member namespaces

    def as_dict(self) -> dict[str, Any]:
        return {
            "isolation": self.isolation,
            "namespaces": self.namespaces,
            "segments": list(self.segments),
            "matrix": {f"{a}->{b}": v for (a, b), v in sorted(self.matrix.items())},
            "exposures": [e.as_status() for e in self.exposures],
            "notIsolatable": list(self.not_isolatable),
        }


def members(
    iso: EnvironmentIsolation,
    isolations: Sequence[EnvironmentIsolation],
    namespaces: Sequence[NamespaceFacts],
    ctx: RenderContext,
) -> list[Member]:
    out = []
    for ns in namespaces:
        d = decide(ns, isolations, ctx)
        if d.owner == iso.name and d.state in OWNED and d.segment is not None:
            out.append(Member(ns.name, ns.label_map, d.segment))
    return out


def _admits(peers: Sequence[Any] | None, segment: str) -> bool:
    return peers is None or any(
        p.segment == segment or p.namespace_selector is not None for p in peers
    )


def declared(iso: EnvironmentIsolation, src: str, dst: str) -> bool:
    """Does the spec itself open a path from segment `src` to segment `dst`?"""
    if src == dst and iso.same_segment:
        return True
    for rule in iso.allow:  # a rule may open a segment to itself under sameSegment: Deny
        targets = rule.segments or tuple(s.name for s in iso.segments)
        if dst in targets and any(_admits(r.peers, src) for r in rule.ingress or ()):
            return True
        if src in targets and any(_admits(r.peers, dst) for r in rule.egress or ()):
            return True
    return False


def report(
    iso: EnvironmentIsolation,
    isolations: Sequence[EnvironmentIsolation],
    namespaces: Sequence[NamespaceFacts],
    policies: Sequence[Policy],
    managed: AbstractSet[tuple[str, str]],
    ctx: RenderContext,
    host_network: Sequence[tuple[str, str]] = (),
    wide_prefixes: WidePrefixes = DEFAULT_WIDE,
) -> Report:
    mine = members(iso, isolations, namespaces, ctx)
    names = {m.name for m in mine}
    relevant = [p for p in policies if p.namespace in names]
    found = tuple(find(mine, relevant, managed, wide_prefixes))
    segs = tuple(s.name for s in iso.segments)
    exposed = set()
    for e in found:
        if e.source_segment and e.destination_segment:
            exposed.add((e.source_segment, e.destination_segment))
        elif e.destination_segment:  # a wide ipBlock admitted in: may cover any segment's pods
            exposed.update((a, e.destination_segment) for a in segs if a != e.destination_segment)
        elif e.source_segment:  # a wide ipBlock allowed out
            exposed.update((e.source_segment, b) for b in segs if b != e.source_segment)
    matrix = {
        (a, b): "exposed" if (a, b) in exposed else "allowed" if declared(iso, a, b) else "isolated"
        for a in segs
        for b in segs
    }
    seg_of = {m.name: m.segment for m in mine}
    hosted = tuple(sorted(f"{seg_of[ns]}: {name}" for ns, name in host_network if ns in seg_of))
    return Report(iso.name, segs, len(mine), matrix, found, hosted)


def host_network(objects: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(namespace, `ns/name[Kind]`) of pods and workloads that use the host's network.

    NetworkPolicy does not apply to such pods at all: a namespace's default-deny cannot
    isolate them.
    """
    out = []
    for o in objects:
        kind = o.get("kind")
        if kind not in WORKLOAD_KINDS:
            continue
        spec = pod_template(o).get("spec") or {}
        if spec.get("hostNetwork") is True:
            meta = o.get("metadata") or {}
            ns = str(meta.get("namespace") or "default")
            out.append((ns, f"{ns}/{meta.get('name')}[{kind}]"))
    return out


def reports_from_objects(
    objects: Sequence[Mapping[str, Any]],
    ctx: RenderContext,
    wide_prefixes: WidePrefixes = DEFAULT_WIDE,
) -> list[Report]:
    """Offline and live alike: EnvironmentIsolations, Namespaces, NetworkPolicies (and the
    pods and workloads, for hostNetwork) in."""
    isolations = [
        EnvironmentIsolation.from_body(o)
        for o in objects
        if o.get("kind") == "EnvironmentIsolation"
    ]
    namespaces = [NamespaceFacts.from_body(o) for o in objects if o.get("kind") == "Namespace"]
    raw = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    policies = [parse_policy(o) for o in raw]
    # Live objects carry managedFields and must prove ownership with them; exported files
    # usually carry none, and then the label decides.
    managed = {
        (p.namespace, p.name)
        for p, o in zip(policies, raw, strict=True)
        if owned(o.get("metadata") or {}, strict=False)
    }
    hosted = host_network(objects)
    return [report(i, isolations, namespaces, policies, managed, ctx, hosted, wide_prefixes)
            for i in isolations]  # fmt: skip


def format_text(reports: Sequence[Report]) -> str:
    lines: list[str] = []
    for r in reports:
        head = f"EnvironmentIsolation {r.isolation}: {len(r.segments)} segments"
        lines.append(f"{head}, {r.namespaces} namespaces")
        width = max([len("source \\ dest"), *map(len, r.segments)]) + 2
        lines.append(
            ("source \\ dest".ljust(width) + "".join(s.ljust(width) for s in r.segments)).rstrip()
        )
        for a in r.segments:
            cells = "".join(r.matrix[(a, b)].upper().ljust(width) if r.matrix[(a, b)] == "exposed"
                            else r.matrix[(a, b)].ljust(width) for b in r.segments)  # fmt: skip
            lines.append((a.ljust(width) + cells).rstrip())
        if r.exposures:
            lines.append(f"{len(r.exposures)} exposures:")
            lines.extend(f"  {e}" for e in r.exposures)
        else:
            lines.append("no exposures: every cross-segment path is declared in the spec")
        if r.not_isolatable:
            lines.append(f"{len(r.not_isolatable)} not isolatable (hostNetwork: no NetworkPolicy "
                         "applies to them):")  # fmt: skip
            lines.extend(f"  {x}" for x in r.not_isolatable)
        lines.append("")
    return "\n".join(lines)
