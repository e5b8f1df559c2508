"""Pictures: Graphviz DOT of a verify report (segments) and of reachability (workloads). Pure.

`verify`: one node per segment; one edge per allowed path: declared paths (the same
segment, and every allow rule that opens one segment to another) in black, labelled with
the rules and their ports; exposures in red and bold, labelled with the ports and the
policies responsible (a wide ipBlock is a node of its own, outside the segments).
`reachability`: workloads grouped by namespace (one cluster per namespace, as
netpol-analyzer's dot output groups them), outside address ranges apart, one edge per
allowed connection labelled with its ports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from envisolation.spec.model import EnvironmentIsolation, Port, TrafficRule

EXPOSED = 'color="red", fontcolor="red", style="bold"'


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _ports(ports: Sequence[Port] | None) -> str:
    if not ports:
        return "all ports"
    out = []
    for p in ports:
        if p.port is None:
            out.append(f"{p.protocol} all")
        elif p.end_port:
            out.append(f"{p.protocol} {p.port}-{p.end_port}")
        else:
            out.append(f"{p.protocol} {p.port}")
    return ",".join(out)


def _admits(rules: Sequence[TrafficRule] | None, segment: str) -> list[str]:
    """Ports of the rules whose peers can be in `segment`."""
    out = []
    for r in rules or ():
        if r.peers is None or any(p.segment == segment or p.namespace_selector is not None
                                  for p in r.peers):  # fmt: skip
            out.append(_ports(r.ports))
    return out


def declared_paths(iso: EnvironmentIsolation, src: str, dst: str) -> list[str]:
    """What the spec says opens segment src to segment dst, one label line each."""
    out = ["same segment"] if src == dst and iso.same_segment else []
    for rule in iso.allow:
        targets = rule.segments or tuple(s.name for s in iso.segments)
        ports = _admits(rule.ingress, src) if dst in targets else []
        ports += _admits(rule.egress, dst) if src in targets else []
        if ports:
            out.append(f"{rule.name}: {', '.join(dict.fromkeys(ports))}")
    return out


def verify_dot(reports: Iterable[Any], isolations: Sequence[EnvironmentIsolation]) -> str:
    """`reports` are analysis.verify.Report objects (typed loosely: verify imports graph)."""
    by_name = {i.name: i for i in isolations}
    lines = ["digraph envisolation {", '  rankdir="LR";', '  node [shape="box", style="rounded"];']
    for n, r in enumerate(reports):
        iso = by_name[r.isolation]
        lines.append(f"  subgraph cluster_{n} {{")
        lines.append(f"    label={quote(f'EnvironmentIsolation {r.isolation}')};")
        for seg in r.segments:
            lines.append(f"    {quote(f'{r.isolation}/{seg}')} [label={quote(seg)}];")
        lines.append("  }")
        exposed: dict[tuple[str, str], list[str]] = {}
        for e in r.exposures:
            label = f"EXPOSED {e.conns} by {','.join(e.policies)}"
            if e.source_segment and e.destination_segment:
                exposed.setdefault((e.source_segment, e.destination_segment), []).append(label)
                continue
            # a wide ipBlock: its own node, outside the segments, and a red edge
            block = e.source if not e.source_segment else e.destination
            node = quote(f"{r.isolation}/{block}")
            lines.append(f'  {node} [shape="ellipse", label={quote(block)}];')
            seg = quote(f"{r.isolation}/{e.destination_segment or e.source_segment}")
            src, dst = (node, seg) if not e.source_segment else (seg, node)
            lines.append(f"  {src} -> {dst} [label={quote(label)}, {EXPOSED}];")
        for a in r.segments:
            for b in r.segments:
                src, dst = quote(f"{r.isolation}/{a}"), quote(f"{r.isolation}/{b}")
                declared = declared_paths(iso, a, b) if r.matrix[(a, b)] != "isolated" else []
                if declared:
                    lines.append(f"  {src} -> {dst} [label={quote(chr(10).join(declared))}];")
                if (a, b) in exposed:
                    label = quote("\n".join(dict.fromkeys(exposed[(a, b)])))
                    lines.append(f"  {src} -> {dst} [label={label}, {EXPOSED}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def reachability_dot(rows: Iterable[tuple[str, str, str]]) -> str:
    """rows: (source, destination, connections) as `reachability` prints them."""
    rows = list(rows)
    names = sorted({n for a, b, _ in rows for n in (a, b)})
    by_ns: dict[str, list[str]] = {}
    outside = []
    for name in names:
        if name.endswith("[External]"):
            outside.append(name)
        else:
            by_ns.setdefault(name.split("/", 1)[0], []).append(name)
    lines = ["digraph reachability {", '  rankdir="LR";', '  node [shape="box", style="rounded"];']
    for i, (ns, members) in enumerate(sorted(by_ns.items())):
        lines.append(f"  subgraph cluster_ns_{i} {{")
        lines.append(f"    label={quote(ns)};")
        for m in members:
            lines.append(f"    {quote(m)} [label={quote(m.split('/', 1)[1])}];")
        lines.append("  }")
    for ext in outside:
        lines.append(
            f'  {quote(ext)} [shape="ellipse", label={quote(ext.removesuffix("[External]"))}];'
        )
    for a, b, conns in rows:
        lines.append(f"  {quote(a)} -> {quote(b)} [label={quote(conns)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
