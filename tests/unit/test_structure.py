"""The structural check of a spec against the CRD's schema (spec/structure.py): every kind
of refusal, with its exact message (the field's path, what was expected, the value shown
as JSON and cut at 40 characters)."""

from __future__ import annotations

from typing import Any

import pytest

from envisolation.spec.model import InvalidSpec
from envisolation.spec.schema import LABEL_KEY
from envisolation.spec.structure import check_spec

SEG = [{"name": "dev"}]


def port(**p: Any) -> dict[str, Any]:
    return {"segments": SEG, "allow": [{"name": "r", "ingress": [{"ports": [p]}]}]}


def labels(n: int) -> dict[str, Any]:
    sel = {"matchLabels": {f"k{i}": "v" for i in range(n)}}
    return {"segments": [{"name": "dev", "namespaceSelector": sel}]}


REFUSED = [
    ({"segments": [{"name": 5}]}, "spec.segments[0].name: must be a string, got integer 5"),
    ({"segments": SEG, "isolate": [True]}, "spec.isolate[0]: must be a string, got boolean true"),
    ({"segments": [{"name": {"k": "é" * 50}}]},
     'spec.segments[0].name: must be a string, got object {"k": "' + "é" * 30 + "..."),
    ({"segments": [{"name": ["a" * 36]}]},  # 40 characters of JSON: shown whole
     'spec.segments[0].name: must be a string, got array ["' + "a" * 36 + '"]'),
    ({"segments": [{"name": ["a" * 37]}]},  # 41: cut to 37 and "..."
     'spec.segments[0].name: must be a string, got array ["' + "a" * 35 + "..."),
    ({"segments": "dev"}, 'spec.segments: must be an array, got string "dev"'),
    ({"segments": ["dev"]}, 'spec.segments[0]: must be an object, got string "dev"'),
    ({"segments": SEG, "dns": {"enabled": "yes"}},
     'spec.dns.enabled: must be a boolean, got string "yes"'),
    (port(port=80, endPort=True),
     "spec.allow[0].ingress[0].ports[0].endPort: must be an integer, got boolean true"),
    ({"segments": SEG, "isolate": ["Ingréss"]},
     'spec.isolate[0]: "Ingréss" is not one of Ingress, Egress'),
    ({"segments": SEG, "isolate": ["Ingress", "Ingress"]},
     'spec.isolate[1]: duplicate value "Ingress"'),
    ({"segments": SEG, "bogus": 1}, 'spec.bogus: unknown field "bogus"'),
    ({"segments": [{}]}, "spec.segments[0].name: required"),
    (port(port=1.5),
     "spec.allow[0].ingress[0].ports[0].port: must be a number or a string, got float"),
    (port(port=80, endPort=0),
     "spec.allow[0].ingress[0].ports[0].endPort: 0 is less than the minimum 1"),
    (port(port=80, endPort=65536),
     "spec.allow[0].ingress[0].ports[0].endPort: 65536 is greater than the maximum 65535"),
    (labels(33), "spec.segments[0].namespaceSelector.matchLabels: 33 entries, at most 32 allowed"),
    ({"segments": [{"name": f"s{i}"} for i in range(13)]},
     "spec.segments: 13 items, at most 12 allowed"),
    ({"segments": []}, "spec.segments: 0 items, at least 1 required"),
    ({"segments": SEG, "namespaceLabel": "bad key!"},
     f'spec.namespaceLabel: "bad key!" does not match {LABEL_KEY}'),
    ({"segments": SEG, "namespaceLabel": "x" * 318},
     "spec.namespaceLabel: 318 characters, at most 317 allowed"),
    ({"segments": SEG, "namespaceLabel": None}, "spec.namespaceLabel: must be a string, got null"),
    (port(port=None), "spec.allow[0].ingress[0].ports[0].port: must be a number or a string, got null"),
    ({"segments": [{"name": "dev"}, {"name": "dev", "enforcement": "Off"}]},
     'spec.segments[1]: duplicate value {"name": "dev", "enforcement": "Off"}'),
    ({"segments": SEG, "excludeNamespaces": ["a", "b", "a"]}, 'spec.excludeNamespaces[2]: duplicate value "a"'),
    ({"segments": SEG, "allow": [{"name": "r", "ingress": [{"from": [{"podSelector": {"matchLabels": {"a": 1}}}]}]}]},
     "spec.allow[0].ingress[0].from[0].podSelector.matchLabels.a: must be a string, got integer 1"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "message"), REFUSED)
def test_refused_with_the_exact_message(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        check_spec(spec)
    assert str(e.value) == message


@pytest.mark.parametrize(
    "spec",
    [
        port(port=80, endPort=65535),
        port(port=80, endPort=1),
        port(port="http"),
        labels(32),
        {"segments": [{"name": f"s{i}"} for i in range(12)]},
        {"segments": SEG, "namespaceLabel": "x" * 317},
        {"segments": SEG, "isolate": ["Ingress", "Egress"]},
    ],
)
def test_at_the_limits_accepted(spec: dict[str, Any]) -> None:
    check_spec(spec)
