"""Typed, frozen views of an EnvironmentIsolation and of the namespaces it governs.

`EnvironmentIsolation.from_body` parses and validates a CR body (as the API returns it, or
as a user wrote it for `envisolation render`), applies the same defaults as the CRD, and
raises `InvalidSpec` naming the field path of the first problem it finds.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from envisolation.spec import constants as c
from envisolation.spec.selectors import LabelSelector, Requirement

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PROTOCOLS = ("TCP", "UDP", "SCTP")


class InvalidSpec(ValueError):
    """The spec cannot be rendered; the message starts with the field path."""


class Enforcement(StrEnum):
    ENFORCE = "Enforce"
    AUDIT = "Audit"
    OFF = "Off"


@dataclass(frozen=True)
class IPBlock:
    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True)
class Peer:
    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None
    segment: str | None = None


@dataclass(frozen=True)
class Port:
    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True)
class TrafficRule:
    """One ingress or egress rule; `peers is None` means "any peer", as in NetworkPolicy."""

    peers: tuple[Peer, ...] | None
    ports: tuple[Port, ...] | None


@dataclass(frozen=True)
class AllowRule:
    name: str
    segments: tuple[str, ...]
    pod_selector: LabelSelector
    ingress: tuple[TrafficRule, ...] | None
    egress: tuple[TrafficRule, ...] | None

    @property
    def policy_name(self) -> str:
        return c.POLICY_ALLOW_PREFIX + self.name


@dataclass(frozen=True)
class Segment:
    name: str
    enforcement: Enforcement
    namespace_selector: LabelSelector | None = None


DEFAULT_DNS_SELECTOR = LabelSelector(match_labels=c.DEFAULT_DNS_POD_LABELS)
DEFAULT_DNS_PORTS = (Port("UDP", 53), Port("TCP", 53))


@dataclass(frozen=True)
class Dns:
    enabled: bool = True
    namespace: str = c.DEFAULT_DNS_NAMESPACE
    pod_selector: LabelSelector = DEFAULT_DNS_SELECTOR
    ports: tuple[Port, ...] = DEFAULT_DNS_PORTS


@dataclass(frozen=True)
class EnvironmentIsolation:
    name: str
    namespace_label: str
    enforcement: Enforcement
    isolate: tuple[str, ...]
    segments: tuple[Segment, ...]
    same_segment: bool
    dns: Dns
    allow: tuple[AllowRule, ...]
    exclude_namespaces: frozenset[str]
    deletion_policy: str
    uid: str = ""
    generation: int = 0
    created: str = ""
    deleting: bool = False

    def segment(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    @property
    def age_key(self) -> tuple[str, str]:
        """Older first: the owner of a namespace claimed twice is the first in this order."""
        return (self.created or "9999", self.name)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> EnvironmentIsolation:
        meta = _obj(body.get("metadata") or {}, "metadata")
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidSpec("metadata.name: required")
        return _parse_spec(_obj(body.get("spec") or {}, "spec"), name, meta)


@dataclass(frozen=True)
class NamespaceFacts:
    name: str
    labels: tuple[tuple[str, str], ...]
    terminating: bool = False

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> NamespaceFacts:
        meta = body.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        name = str(meta.get("name", ""))
        labels.setdefault(c.NAMESPACE_NAME_LABEL, name)
        phase = (body.get("status") or {}).get("phase")
        terminating = phase == "Terminating" or bool(meta.get("deletionTimestamp"))
        return cls(name, tuple(sorted((str(k), str(v)) for k, v in labels.items())), terminating)


# -- parsing --------------------------------------------------------------------------------


def _obj(v: object, path: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise InvalidSpec(f"{path}: must be an object, got {type(v).__name__}")
    return v


def _list(v: object, path: str) -> Sequence[Any]:
    if not isinstance(v, list):
        raise InvalidSpec(f"{path}: must be a list, got {type(v).__name__}")
    return v


def _str(v: object, path: str) -> str:
    if not isinstance(v, str):
        raise InvalidSpec(f"{path}: must be a string, got {type(v).__name__}")
    return v


def _enum(v: object, path: str, allowed: Sequence[str]) -> str:
    if isinstance(v, bool) and "Off" in allowed:
        raise InvalidSpec(
            f"{path}: got the boolean {str(v).lower()}; YAML reads an unquoted Off as false, "
            'so write "Off" in quotes'
        )
    s = _str(v, path)
    if s not in allowed:
        raise InvalidSpec(f"{path}: {s!r} is not one of {', '.join(allowed)}")
    return s


def _dns_label(v: object, path: str, max_len: int = 63) -> str:
    s = _str(v, path)
    if not DNS_LABEL.match(s) or len(s) > max_len:
        raise InvalidSpec(
            f"{path}: {s!r} must be a DNS label (lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {max_len} characters)"
        )
    return s


def _label_key(v: object, path: str) -> str:
    s = _str(v, path)
    prefix, _, name = s.rpartition("/")
    ok = bool(LABEL_NAME.match(name)) and len(name) <= 63
    if prefix:
        ok = ok and bool(DNS_SUBDOMAIN.match(prefix)) and len(prefix) <= 253
    if not ok:
        raise InvalidSpec(f"{path}: {s!r} is not a valid label key")
    return s


def parse_selector(v: object, path: str) -> LabelSelector:
    m = _obj(v, path)
    labels = _obj(m.get("matchLabels") or {}, f"{path}.matchLabels")
    reqs = []
    for i, raw in enumerate(_list(m.get("matchExpressions") or [], f"{path}.matchExpressions")):
        p = f"{path}.matchExpressions[{i}]"
        e = _obj(raw, p)
        op = _enum(e.get("operator"), f"{p}.operator", ("In", "NotIn", "Exists", "DoesNotExist"))
        values = tuple(_str(x, f"{p}.values") for x in _list(e.get("values") or [], f"{p}.values"))
        if op in ("In", "NotIn") and not values:
            raise InvalidSpec(f"{p}.values: must be non-empty for operator {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise InvalidSpec(f"{p}.values: must be empty for operator {op}")
        reqs.append(Requirement(_label_key(e.get("key"), f"{p}.key"), op, values))
    pairs = tuple(
        sorted(
            (_label_key(k, f"{path}.matchLabels"), _str(val, f"{path}.matchLabels.{k}"))
            for k, val in labels.items()
        )
    )
    return LabelSelector(pairs, tuple(reqs))


def _port(v: object, path: str) -> Port:
    m = _obj(v, path)
    proto = _enum(m.get("protocol", "TCP"), f"{path}.protocol", PROTOCOLS)
    port = m.get("port")
    end = m.get("endPort")
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int | str):
            raise InvalidSpec(f"{path}.port: must be a number or a port name")
        if isinstance(port, int) and not 1 <= port <= 65535:
            raise InvalidSpec(f"{path}.port: {port} is outside 1-65535")
        if isinstance(port, str) and not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", port):
            raise InvalidSpec(f"{path}.port: {port!r} is not a valid port name")
    if end is not None:
        if isinstance(end, bool) or not isinstance(end, int):
            raise InvalidSpec(f"{path}.endPort: must be a number")
        if not isinstance(port, int):
            raise InvalidSpec(f"{path}.endPort: needs a numeric port")
        if end < port:
            raise InvalidSpec(f"{path}.endPort: {end} is less than port {port}")
        if end > 65535:
            raise InvalidSpec(f"{path}.endPort: {end} is outside 1-65535")
    return Port(proto, port, end)


def _cidr(v: object, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    s = _str(v, path)
    try:
        return ipaddress.ip_network(s, strict=False)
    except ValueError as e:
        raise InvalidSpec(f"{path}: {s!r} is not a valid CIDR ({e})") from e


def _peer(v: object, path: str, segments: Sequence[str]) -> Peer:
    m = _obj(v, path)
    kinds = [k for k in ("podSelector", "namespaceSelector", "ipBlock", "segment") if k in m]
    if not kinds:
        raise InvalidSpec(
            f"{path}: a peer needs podSelector, namespaceSelector, ipBlock or segment"
        )
    if "ipBlock" in m and len(kinds) > 1:
        raise InvalidSpec(f"{path}: ipBlock cannot be combined with {kinds[0]}")
    if "segment" in m and "namespaceSelector" in m:
        raise InvalidSpec(f"{path}: segment and namespaceSelector cannot both be set")
    ip = None
    if "ipBlock" in m:
        b = _obj(m["ipBlock"], f"{path}.ipBlock")
        net = _cidr(b.get("cidr"), f"{path}.ipBlock.cidr")
        excepts = []
        for i, e in enumerate(_list(b.get("except") or [], f"{path}.ipBlock.except")):
            sub = _cidr(e, f"{path}.ipBlock.except[{i}]")
            if sub.version != net.version or not sub.subnet_of(net):  # type: ignore[arg-type]
                raise InvalidSpec(f"{path}.ipBlock.except[{i}]: {e!r} is not inside {net}")
            excepts.append(str(e))
        ip = IPBlock(_str(b["cidr"], f"{path}.ipBlock.cidr"), tuple(excepts))
    segment = None
    if "segment" in m:
        segment = _str(m["segment"], f"{path}.segment")
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
    for i, r in enumerate(_list(v, path)):
        p = f"{path}[{i}]"
        m = _obj(r, p)
        peers = None
        if m.get(peer_key) is not None:
            items = _list(m[peer_key], f"{p}.{peer_key}")
            peers = tuple(_peer(x, f"{p}.{peer_key}[{j}]", segments) for j, x in enumerate(items))
        ports = None
        if m.get("ports") is not None:
            items = _list(m["ports"], f"{p}.ports")
            ports = tuple(_port(x, f"{p}.ports[{j}]") for j, x in enumerate(items))
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
    label = _label_key(spec.get("namespaceLabel", c.DEFAULT_NAMESPACE_LABEL), "spec.namespaceLabel")
    modes = tuple(e.value for e in Enforcement)
    default_mode = Enforcement(_enum(spec.get("enforcement", "Enforce"), "spec.enforcement", modes))
    isolate_raw = _list(spec.get("isolate", ["Ingress", "Egress"]), "spec.isolate")
    isolate = [
        _enum(d, f"spec.isolate[{i}]", ("Ingress", "Egress")) for i, d in enumerate(isolate_raw)
    ]
    if not isolate:
        raise InvalidSpec("spec.isolate: must name at least one of Ingress, Egress")
    segments: list[Segment] = []
    raw_segments = _list(spec.get("segments") or [], "spec.segments")
    if not raw_segments:
        raise InvalidSpec("spec.segments: at least one segment is required")
    for i, s in enumerate(raw_segments):
        p = f"spec.segments[{i}]"
        m = _obj(s, p)
        seg_name = _dns_label(m.get("name"), f"{p}.name")
        mode = Enforcement(_enum(m.get("enforcement", default_mode), f"{p}.enforcement", modes))
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
    same = _enum(spec.get("sameSegment", "Allow"), "spec.sameSegment", ("Allow", "Deny"))
    dns = _parse_dns(_obj(spec.get("dns") or {}, "spec.dns"))
    rules = []
    for i, r in enumerate(_list(spec.get("allow") or [], "spec.allow")):
        p = f"spec.allow[{i}]"
        m = _obj(r, p)
        rule_name = _dns_label(m.get("name"), f"{p}.name", c.MAX_RULE_NAME)
        targets = tuple(
            _str(x, f"{p}.segments") for x in _list(m.get("segments") or [], f"{p}.segments")
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
            raise InvalidSpec(f"{p}: a rule needs ingress or egress")
        sel = parse_selector(m.get("podSelector") or {}, f"{p}.podSelector")
        rules.append(AllowRule(rule_name, targets, sel, ingress, egress))
    _unique([r.name for r in rules], "spec.allow", "rule")
    excluded = [
        _dns_label(x, f"spec.excludeNamespaces[{i}]")
        for i, x in enumerate(_list(spec.get("excludeNamespaces") or [], "spec.excludeNamespaces"))
    ]
    deletion = _enum(
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
    ns = _dns_label(m.get("namespace", d.namespace), "spec.dns.namespace")
    sel = (
        parse_selector(m["podSelector"], "spec.dns.podSelector")
        if "podSelector" in m
        else d.pod_selector
    )
    ports = d.ports
    if m.get("ports") is not None:
        items = _list(m["ports"], "spec.dns.ports")
        ports = tuple(_port(x, f"spec.dns.ports[{i}]") for i, x in enumerate(items))
    return Dns(enabled, ns, sel, ports)


@dataclass(frozen=True)
class IsolationRecord:
    """An EnvironmentIsolation as the watch last delivered it, unparsed (for the index)."""

    name: str
    uid: str
    generation: int
    deleting: bool
    body: Mapping[str, Any]  # metadata and spec, for EnvironmentIsolation.from_body
    status: Mapping[str, Any]

    @property
    def key(self) -> tuple[str, int, bool]:
        return (self.uid, self.generation, self.deleting)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> IsolationRecord:
        meta = dict(body.get("metadata") or {})
        keep = {k: meta[k] for k in ("name", "uid", "generation", "creationTimestamp",
                                      "deletionTimestamp") if k in meta}  # fmt: skip
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation", 0) or 0),
            deleting=bool(meta.get("deletionTimestamp")),
            body={"metadata": keep, "spec": body.get("spec") or {}},
            status=dict(body.get("status") or {}),
        )

    def parse(self) -> EnvironmentIsolation:
        return EnvironmentIsolation.from_body(self.body)
