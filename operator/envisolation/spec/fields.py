"""Field parsers for the spec: each takes a value and its field path, returns it typed,
or raises InvalidSpec naming the path and the offending value."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from envisolation.spec.model import InvalidSpec, Port
from envisolation.spec.selectors import LabelSelector, Requirement

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PROTOCOLS = ("TCP", "UDP", "SCTP")


def obj(v: object, path: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise InvalidSpec(f"{path}: must be an object, got {type(v).__name__}")
    return v


def listed(v: object, path: str) -> Sequence[Any]:
    if not isinstance(v, list):
        raise InvalidSpec(f"{path}: must be a list, got {type(v).__name__}")
    return v


def string(v: object, path: str) -> str:
    if v is None:
        raise InvalidSpec(f"{path}: required")
    if not isinstance(v, str):
        raise InvalidSpec(f"{path}: must be a string, got {type(v).__name__}")
    return v


def enum(v: object, path: str, allowed: Sequence[str]) -> str:
    if isinstance(v, bool) and "Off" in allowed:
        raise InvalidSpec(
            f"{path}: got the boolean {str(v).lower()}; YAML reads an unquoted Off as false, "
            'so write "Off" in quotes'
        )
    s = string(v, path)
    if s not in allowed:
        raise InvalidSpec(f"{path}: {s!r} is not one of {', '.join(allowed)}")
    return s


def dns_label(v: object, path: str, max_len: int = 63) -> str:
    s = string(v, path)
    if not DNS_LABEL.match(s) or len(s) > max_len:
        raise InvalidSpec(
            f"{path}: {s!r} must be a DNS label (lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {max_len} characters)"
        )
    return s


def label_key(v: object, path: str) -> str:
    s = string(v, path)
    prefix, slash, name = s.rpartition("/")
    ok = bool(LABEL_NAME.match(name)) and len(name) <= 63
    if slash:  # "/name" has an empty prefix: refused, as the CRD's pattern refuses it
        ok = ok and bool(DNS_SUBDOMAIN.match(prefix)) and len(prefix) <= 253
    if not ok:
        raise InvalidSpec(f"{path}: {s!r} is not a valid label key")
    return s


def parse_selector(v: object, path: str) -> LabelSelector:
    m = obj(v, path)
    labels = obj(m.get("matchLabels") or {}, f"{path}.matchLabels")
    reqs = []
    for i, raw in enumerate(listed(m.get("matchExpressions") or [], f"{path}.matchExpressions")):
        p = f"{path}.matchExpressions[{i}]"
        e = obj(raw, p)
        op = enum(e.get("operator"), f"{p}.operator", ("In", "NotIn", "Exists", "DoesNotExist"))
        values = tuple(
            string(x, f"{p}.values") for x in listed(e.get("values") or [], f"{p}.values")
        )
        if op in ("In", "NotIn") and not values:
            raise InvalidSpec(f"{p}.values: must be non-empty for operator {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise InvalidSpec(f"{p}.values: must be empty for operator {op}")
        reqs.append(Requirement(label_key(e.get("key"), f"{p}.key"), op, values))
    pairs = tuple(
        sorted(
            (label_key(k, f"{path}.matchLabels"), string(val, f"{path}.matchLabels.{k}"))
            for k, val in labels.items()
        )
    )
    return LabelSelector(pairs, tuple(reqs))


def port(v: object, path: str) -> Port:
    m = obj(v, path)
    proto = enum(m.get("protocol", "TCP"), f"{path}.protocol", PROTOCOLS)
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


def cidr(v: object, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    s = string(v, path)
    try:
        return ipaddress.ip_network(s, strict=False)
    except ValueError as e:
        raise InvalidSpec(f"{path}: {s!r} is not a valid CIDR ({e})") from e
