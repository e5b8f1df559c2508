"""Parsing and validating an EnvironmentIsolation body into the model (model.py).

Applies the same defaults as the CRD and raises `InvalidSpec` naming the field path and
the offending value of the first problem it finds. The spec's rules are written twice,
as the CRD's schema and CEL (schema.py) and here; structural limits (lengths, counts,
unknown fields, unique lists) are read from schema.py itself (structure.py), the rest
is checked by hand, and the bad-input table (tests/bad_input.py) is run through both the
API server and this parser, which must name the same field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from envisolation.spec import constants as c
from envisolation.spec.fields import (
    cidr,
    dns_label,
    enum,
    label_key,
    listed,
    obj,
    parse_selector,
    port,
    string,
)
from envisolation.spec.model import (
    AllowRule,
    Dns,
    Enforcement,
    EnvironmentIsolation,
    InvalidSpec,
    IPBlock,
    Peer,
    Segment,
    TrafficRule,
)
from envisolation.spec.structure import check_spec


def parse_isolation(body: Mapping[str, Any]) -> EnvironmentIsolation:
    meta = obj(body.get("metadata") or {}, "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidSpec("metadata.name: required")
    spec = obj(body.get("spec") or {}, "spec")
    isolation = _parse_spec(spec, name, meta)
    check_spec(spec)  # what the schema says and the rules above do not (limits, unknowns)
    return isolation


# -- parsing --------------------------------------------------------------------------------


def _peer(v: object, path: str, segments: Sequence[str]) -> Peer:
    m = obj(v, path)
    kinds = [k for k in ("podSelector", "namespaceSelector", "ipBlock", "segment") if k in m]
    if not kinds:
        raise InvalidSpec(
            f"{path}: an empty peer: it needs one of podSelector, namespaceSelector, ipBlock "
            "or segment"
        )
    if "ipBlock" in m and len(kinds) > 1:
        cidr_ = (m["ipBlock"] or {}).get("cidr") if isinstance(m["ipBlock"], Mapping) else None
        raise InvalidSpec(f"{path}: ipBlock {cidr_!r} cannot be combined with {kinds[0]}")
    if "segment" in m and "namespaceSelector" in m:
        raise InvalidSpec(
            f"{path}: segment {m['segment']!r} and namespaceSelector cannot both be set: the "
            "segment already selects its namespaces"
        )
    ip = None
    if "ipBlock" in m:
        b = obj(m["ipBlock"], f"{path}.ipBlock")
        net = cidr(b.get("cidr"), f"{path}.ipBlock.cidr")
        excepts = []
        for i, e in enumerate(listed(b.get("except") or [], f"{path}.ipBlock.except")):
            sub = cidr(e, f"{path}.ipBlock.except[{i}]")
            if sub.version != net.version or not sub.subnet_of(net):  # type: ignore[arg-type]
                raise InvalidSpec(f"{path}.ipBlock.except[{i}]: {e!r} is not inside {net}")
            excepts.append(str(e))
        ip = IPBlock(string(b["cidr"], f"{path}.ipBlock.cidr"), tuple(excepts))
    segment = None
    if "segment" in m:
        segment = string(m["segment"], f"{path}.segment")
        if segment not in segments:
            raise InvalidSpec(
                f"{path}.segment: unknown segment {segment!r}; segments are {', '.join(segments)}"
            )
    return Peer(
        parse_selector(m["podSelector"], f"{path}.podSelector") if "podSelector" in m else None,
        parse_selector(m["namespaceSelector"], f"{path}.namespaceSelector")
        if "namespaceSelector" in m
        else None,
        ip,
        segment,
    )


def _rules(v: object, path: str, peer_key: str, segments: Sequence[str]) -> tuple[TrafficRule, ...]:
    out = []
    for i, r in enumerate(listed(v, path)):
        p = f"{path}[{i}]"
        m = obj(r, p)
        peers = None
        if m.get(peer_key) is not None:
            items = listed(m[peer_key], f"{p}.{peer_key}")
            peers = tuple(_peer(x, f"{p}.{peer_key}[{j}]", segments) for j, x in enumerate(items))
        ports = None
        if m.get("ports") is not None:
            items = listed(m["ports"], f"{p}.ports")
            ports = tuple(port(x, f"{p}.ports[{j}]") for j, x in enumerate(items))
        out.append(TrafficRule(peers, ports))
    return tuple(out)


def _unique(names: Sequence[str], path: str, what: str) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise InvalidSpec(f"{path}[{i}].name: duplicate {what} name {n!r}")
        seen.add(n)


def _parse_spec(
    spec: Mapping[str, Any], name: str, meta: Mapping[str, Any]
) -> EnvironmentIsolation:
    label = label_key(spec.get("namespaceLabel", c.DEFAULT_NAMESPACE_LABEL), "spec.namespaceLabel")
    modes = tuple(e.value for e in Enforcement)
    default_mode = Enforcement(enum(spec.get("enforcement", "Enforce"), "spec.enforcement", modes))
    isolate_raw = listed(spec.get("isolate", ["Ingress", "Egress"]), "spec.isolate")
    isolate = [
        enum(d, f"spec.isolate[{i}]", ("Ingress", "Egress")) for i, d in enumerate(isolate_raw)
    ]
    if not isolate:
        raise InvalidSpec("spec.isolate: must name at least one of Ingress, Egress")
    segments: list[Segment] = []
    raw_segments = listed(spec.get("segments") or [], "spec.segments")
    if not raw_segments:
        raise InvalidSpec("spec.segments: at least one segment is required")
    for i, s in enumerate(raw_segments):
        p = f"spec.segments[{i}]"
        m = obj(s, p)
        seg_name = dns_label(m.get("name"), f"{p}.name")
        mode = Enforcement(enum(m.get("enforcement", default_mode), f"{p}.enforcement", modes))
        sel = None
        if m.get("namespaceSelector") is not None:
            sel = parse_selector(m["namespaceSelector"], f"{p}.namespaceSelector")
            clash = dict(sel.match_labels).get(label)
            if clash is not None and clash != seg_name:
                raise InvalidSpec(
                    f"{p}.namespaceSelector.matchLabels: {label}={clash} contradicts the "
                    f"segment label {label}={seg_name}; no namespace could match"
                )
        segments.append(Segment(seg_name, mode, sel))
    names = [s.name for s in segments]
    _unique(names, "spec.segments", "segment")
    same = enum(spec.get("sameSegment", "Allow"), "spec.sameSegment", ("Allow", "Deny"))
    dns = _parse_dns(obj(spec.get("dns") or {}, "spec.dns"))
    rules = []
    for i, r in enumerate(listed(spec.get("allow") or [], "spec.allow")):
        p = f"spec.allow[{i}]"
        m = obj(r, p)
        rule_name = dns_label(m.get("name"), f"{p}.name", c.MAX_RULE_NAME)
        targets = tuple(
            string(x, f"{p}.segments") for x in listed(m.get("segments") or [], f"{p}.segments")
        )
        for j, t in enumerate(targets):
            if t not in names:
                raise InvalidSpec(
                    f"{p}.segments[{j}]: unknown segment {t!r}; segments are {', '.join(names)}"
                )
        ingress = (
            _rules(m["ingress"], f"{p}.ingress", "from", names)
            if m.get("ingress") is not None
            else None
        )
        egress = (
            _rules(m["egress"], f"{p}.egress", "to", names) if m.get("egress") is not None else None
        )
        if ingress is None and egress is None:
            raise InvalidSpec(f"{p}: rule {rule_name!r} needs ingress or egress")
        sel = parse_selector(m.get("podSelector") or {}, f"{p}.podSelector")
        rules.append(AllowRule(rule_name, targets, sel, ingress, egress))
    _unique([r.name for r in rules], "spec.allow", "rule")
    excluded = [
        dns_label(x, f"spec.excludeNamespaces[{i}]")
        for i, x in enumerate(listed(spec.get("excludeNamespaces") or [], "spec.excludeNamespaces"))
    ]
    deletion = enum(
        spec.get("deletionPolicy", "Orphan"), "spec.deletionPolicy", ("Orphan", "Delete")
    )
    return EnvironmentIsolation(
        name=name,
        namespace_label=label,
        enforcement=default_mode,
        isolate=tuple(d for d in ("Ingress", "Egress") if d in isolate),
        segments=tuple(segments),
        same_segment=same == "Allow",
        dns=dns,
        allow=tuple(rules),
        exclude_namespaces=frozenset(excluded),
        deletion_policy=deletion,
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation", 0) or 0),
        created=str(meta.get("creationTimestamp", "") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def _parse_dns(m: Mapping[str, Any]) -> Dns:
    d = Dns()
    enabled = m.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidSpec("spec.dns.enabled: must be true or false")
    ns = dns_label(m.get("namespace", d.namespace), "spec.dns.namespace")
    sel = (
        parse_selector(m["podSelector"], "spec.dns.podSelector")
        if "podSelector" in m
        else d.pod_selector
    )
    ports = d.ports
    if m.get("ports") is not None:
        items = listed(m["ports"], "spec.dns.ports")
        ports = tuple(port(x, f"spec.dns.ports[{i}]") for i, x in enumerate(items))
    return Dns(enabled, ns, sel, ports)
