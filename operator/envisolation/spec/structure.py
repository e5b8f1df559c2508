"""The structural half of validation, read from the CRD's own schema (schema.py).

Types, unknown fields, required fields, lengths, counts, ranges, patterns, enums and
unique lists are checked by walking the body alongside the OpenAPI schema the API server
enforces, so `envisolation render` refuses offline what `kubectl apply` would refuse,
naming the same field. CEL rules (cross-field checks) are parse.py's, by hand.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from envisolation.spec.model import InvalidSpec
from envisolation.spec.schema import Schema, spec_schema

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
}


@functools.cache
def _spec_schema() -> Schema:
    return spec_schema()


@functools.cache
def _pattern(p: str) -> re.Pattern[str]:
    return re.compile(p)


def check_spec(spec: object) -> None:
    """Raise InvalidSpec naming the first field that breaks the CRD's structural schema."""
    _check(spec, _spec_schema(), "spec")


def _short(v: object) -> str:
    text = json.dumps(v, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(v: object) -> str:
    for name, types in _TYPES.items():
        if isinstance(v, types) and not (name == "integer" and isinstance(v, bool)):
            return name
    return "null" if v is None else type(v).__name__


def _check(v: Any, s: Schema, path: str) -> None:
    if s.get("x-kubernetes-int-or-string"):
        if _kind(v) not in ("integer", "string"):
            raise InvalidSpec(f"{path}: must be a number or a string, got {_kind(v)}")
        return
    want = s.get("type")
    if want is not None and _kind(v) != want:
        got = "null" if v is None else f"{_kind(v)} {_short(v)}"
        raise InvalidSpec(f"{path}: must be {'an' if want[0] in 'aeio' else 'a'} {want}, got {got}")
    if want == "object":
        _object(v, s, path)
    elif want == "array":
        _array(v, s, path)
    elif want == "string":
        _string(v, s, path)
    elif want == "integer":
        if "minimum" in s and v < s["minimum"]:
            raise InvalidSpec(f"{path}: {v} is less than the minimum {s['minimum']}")
        if "maximum" in s and v > s["maximum"]:
            raise InvalidSpec(f"{path}: {v} is greater than the maximum {s['maximum']}")


def _object(v: Mapping[str, Any], s: Schema, path: str) -> None:
    props: Mapping[str, Schema] = s.get("properties") or {}
    extra = s.get("additionalProperties")
    if "maxProperties" in s and len(v) > s["maxProperties"]:
        raise InvalidSpec(f"{path}: {len(v)} entries, at most {s['maxProperties']} allowed")
    for key in s.get("required") or []:
        if key not in v:
            raise InvalidSpec(f"{path}.{key}: required")
    for key, item in v.items():
        if key in props:
            _check(item, props[key], f"{path}.{key}")
        elif isinstance(extra, dict):
            _check(item, extra, f"{path}.{key}")
        else:
            raise InvalidSpec(f'{path}.{key}: unknown field "{key}"')


def _array(v: list[Any], s: Schema, path: str) -> None:
    if "maxItems" in s and len(v) > s["maxItems"]:
        raise InvalidSpec(f"{path}: {len(v)} items, at most {s['maxItems']} allowed")
    if "minItems" in s and len(v) < s["minItems"]:
        raise InvalidSpec(f"{path}: {len(v)} items, at least {s['minItems']} required")
    for i, item in enumerate(v):
        _check(item, s.get("items") or {}, f"{path}[{i}]")
    kind = s.get("x-kubernetes-list-type")
    keys = s.get("x-kubernetes-list-map-keys") or []
    seen: set[str] = set()
    for i, item in enumerate(v):
        if kind == "set":
            key = json.dumps(item, sort_keys=True)
        elif kind == "map":
            key = json.dumps([item.get(k) for k in keys])
        else:
            return
        if key in seen:
            raise InvalidSpec(f"{path}[{i}]: duplicate value {_short(item)}")
        seen.add(key)


def _string(v: str, s: Schema, path: str) -> None:
    if "maxLength" in s and len(v) > s["maxLength"]:
        raise InvalidSpec(f"{path}: {len(v)} characters, at most {s['maxLength']} allowed")
    if "enum" in s and v not in s["enum"]:
        raise InvalidSpec(f"{path}: {_short(v)} is not one of {', '.join(s['enum'])}")
    if "pattern" in s and not _pattern(s["pattern"]).search(v):
        raise InvalidSpec(f"{path}: {_short(v)} does not match {s['pattern']}")
