"""Parsing and validation: defaults like the CRD's, errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from envisolation.spec.model import Enforcement, EnvironmentIsolation, InvalidSpec, NamespaceFacts


def body(**spec: Any) -> dict[str, Any]:
    spec.setdefault("segments", [{"name": "dev"}, {"name": "prod"}])
    return {"metadata": {"name": "env"}, "spec": spec}


def test_defaults_match_the_crd() -> None:
    iso = EnvironmentIsolation.from_body(body())
    assert iso.namespace_label == "environment"
    assert iso.enforcement is Enforcement.ENFORCE
    assert iso.isolate == ("Ingress", "Egress")
    assert iso.same_segment is True
    assert iso.dns.enabled and iso.dns.namespace == "kube-system"
    assert [(p.protocol, p.port) for p in iso.dns.ports] == [("UDP", 53), ("TCP", 53)]
    assert iso.deletion_policy == "Orphan"
    assert [s.enforcement for s in iso.segments] == [Enforcement.ENFORCE] * 2


def test_segment_enforcement_overrides_the_default() -> None:
    iso = EnvironmentIsolation.from_body(
        body(
            enforcement="Audit",
            segments=[{"name": "dev"}, {"name": "prod", "enforcement": "Enforce"}],
        )
    )
    assert [s.enforcement.value for s in iso.segments] == ["Audit", "Enforce"]


RULE = {"name": "r", "ingress": [{"from": [{"podSelector": {}}]}]}
DNS_RULE = (
    " (lower-case letters, digits and '-', starting and ending with a letter or digit, at most "
    "63 characters)"
)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"segments": []}, "spec.segments: at least one segment is required"),
        (
            {"segments": [{"name": "dev"}, {"name": "dev"}]},
            "spec.segments[1].name: duplicate segment name 'dev'",
        ),
        (
            {"segments": [{"name": "Dev"}]},
            "spec.segments[0].name: 'Dev' must be a DNS label" + DNS_RULE,
        ),
        ({"enforcement": "Maybe"}, "spec.enforcement: 'Maybe' is not one of Enforce, Audit, Off"),
        (
            {"enforcement": False},
            "spec.enforcement: got the boolean false; YAML reads an unquoted Off as false, so "
            'write "Off" in quotes',
        ),
        ({"isolate": []}, "spec.isolate: must name at least one of Ingress, Egress"),
        (
            {"namespaceLabel": "bad key!"},
            "spec.namespaceLabel: 'bad key!' is not a valid label key",
        ),
        ({"allow": [RULE, RULE]}, "spec.allow[1].name: duplicate rule name 'r'"),
        ({"allow": [{"name": "r"}]}, "spec.allow[0]: rule 'r' needs ingress or egress"),
        (
            {"allow": [{"name": "x" * 45, "ingress": []}]},
            f"spec.allow[0].name: '{'x' * 45}' must be a DNS label"
            + DNS_RULE.replace("63 characters", "44 characters"),
        ),
        (
            {"allow": [{**RULE, "segments": ["qa"]}]},
            "spec.allow[0].segments[0]: unknown segment 'qa'; segments are dev, prod",
        ),
        (
            {"allow": [{"name": "r", "ingress": [{"from": [{"segment": "qa"}]}]}]},
            "spec.allow[0].ingress[0].from[0].segment: unknown segment 'qa'; segments are dev, prod",
        ),
        (
            {"allow": [{"name": "r", "egress": [{"to": [{}]}]}]},
            "spec.allow[0].egress[0].to[0]: an empty peer: it needs one of podSelector, namespaceSelector, ipBlock or segment",
        ),
        (
            {
                "allow": [
                    {"name": "r", "egress": [{"to": [{"segment": "dev", "namespaceSelector": {}}]}]}
                ]
            },
            "spec.allow[0].egress[0].to[0]: segment 'dev' and namespaceSelector cannot both be set: "
            "the segment already selects its namespaces",
        ),
        (
            {
                "allow": [
                    {
                        "name": "r",
                        "egress": [
                            {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}
                        ],
                    }
                ]
            },
            "spec.allow[0].egress[0].to[0]: ipBlock '10.0.0.0/8' cannot be combined with podSelector",
        ),
        (
            {"allow": [{"name": "r", "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}]},
            "spec.allow[0].egress[0].to[0].ipBlock.cidr: '10.0.0.0/33' is not a valid CIDR "
            "('10.0.0.0/33' does not appear to be an IPv4 or IPv6 network)",
        ),
        (
            {
                "allow": [
                    {
                        "name": "r",
                        "egress": [
                            {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}
                        ],
                    }
                ]
            },
            "spec.allow[0].egress[0].to[0].ipBlock.except[0]: '11.0.0.0/16' is not inside 10.0.0.0/8",
        ),
        (
            {"allow": [{"name": "r", "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}]},
            "spec.allow[0].ingress[0].ports[0].endPort: 80 is less than port 90",
        ),
        (
            {"allow": [{"name": "r", "ingress": [{"ports": [{"port": "http", "endPort": 80}]}]}]},
            "spec.allow[0].ingress[0].ports[0].endPort: needs a numeric port",
        ),
        (
            {"allow": [{"name": "r", "ingress": [{"ports": [{"port": 70000}]}]}]},
            "spec.allow[0].ingress[0].ports[0].port: 70000 is outside 1-65535",
        ),
        (
            {"allow": [{"name": "r", "ingress": [{"ports": [{"protocol": "ICMP"}]}]}]},
            "spec.allow[0].ingress[0].ports[0].protocol: 'ICMP' is not one of TCP, UDP, SCTP",
        ),
        (
            {
                "segments": [
                    {
                        "name": "dev",
                        "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]},
                    }
                ]
            },
            "spec.segments[0].namespaceSelector.matchExpressions[0].values: must be non-empty for operator In",
        ),
        (
            {
                "segments": [
                    {"name": "dev", "namespaceSelector": {"matchLabels": {"environment": "prod"}}}
                ]
            },
            "spec.segments[0].namespaceSelector.matchLabels: environment=prod contradicts the "
            "segment label environment=dev; no namespace could match",
        ),
        (
            {"excludeNamespaces": ["Bad_NS"]},
            "spec.excludeNamespaces[0]: 'Bad_NS' must be a DNS label" + DNS_RULE,
        ),
        ({"deletionPolicy": "Keep"}, "spec.deletionPolicy: 'Keep' is not one of Orphan, Delete"),
        ({"dns": {"enabled": "yes"}}, "spec.dns.enabled: must be true or false"),
        ({"allow": {"name": "r"}}, "spec.allow: must be a list, got dict"),
        ({"isolate": "Ingress"}, "spec.isolate: must be a list, got str"),
        ({"dns": "x"}, "spec.dns: must be an object, got str"),
        ({"allow": ["x"]}, "spec.allow[0]: must be an object, got str"),
        (
            {"allow": [{**RULE, "segments": [5]}]},
            "spec.allow[0].segments: must be a string, got int",
        ),
        (
            {"allow": [{**RULE, "segments": "dev"}]},
            "spec.allow[0].segments: must be a list, got str",
        ),
        ({"excludeNamespaces": "a"}, "spec.excludeNamespaces: must be a list, got str"),
        ({"segments": "dev"}, "spec.segments: must be a list, got str"),
        ({"segments": ["dev"]}, "spec.segments[0]: must be an object, got str"),
        ({"dns": {"podSelector": "x"}}, "spec.dns.podSelector: must be an object, got str"),
        ({"dns": {"ports": "x"}}, "spec.dns.ports: must be a list, got str"),
        ({"dns": {"ports": [{"port": 0}]}}, "spec.dns.ports[0].port: 0 is outside 1-65535"),
        *[
            ({"allow": [{"name": "r", **rule}]}, "spec.allow[0]." + message)
            for rule, message in [
                ({"ingress": [{"from": ["x"]}]}, "ingress[0].from[0]: must be an object, got str"),
                (
                    {"ingress": [{"from": [{"ipBlock": "x", "podSelector": {}}]}]},
                    "ingress[0].from[0]: ipBlock None cannot be combined with podSelector",
                ),
                (
                    {"ingress": [{"from": [{"ipBlock": "x"}]}]},
                    "ingress[0].from[0].ipBlock: must be an object, got str",
                ),
                (
                    {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": "x"}}]}]},
                    "ingress[0].from[0].ipBlock.except: must be a list, got str",
                ),
                (
                    {"ingress": [{"from": [{"ipBlock": {"cidr": 5}}]}]},
                    "ingress[0].from[0].ipBlock.cidr: must be a string, got int",
                ),
                ({"ingress": "x"}, "ingress: must be a list, got str"),
                ({"ingress": ["x"]}, "ingress[0]: must be an object, got str"),
                ({"egress": [5]}, "egress[0]: must be an object, got int"),
                ({"ingress": [{"from": "x"}]}, "ingress[0].from: must be a list, got str"),
                (
                    {"ingress": [{"from": [{"namespaceSelector": "x"}]}]},
                    "ingress[0].from[0].namespaceSelector: must be an object, got str",
                ),
                (
                    {"egress": [{"to": [{"podSelector": "x"}]}]},
                    "egress[0].to[0].podSelector: must be an object, got str",
                ),
                (
                    {"egress": [{"to": [{"segment": 5}]}]},
                    "egress[0].to[0].segment: must be a string, got int",
                ),
                ({"egress": [{"ports": "x"}]}, "egress[0].ports: must be a list, got str"),
            ]
        ],
    ],
)
def test_invalid_spec_names_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec) as err:
        EnvironmentIsolation.from_body(body(**spec))
    assert str(err.value) == message


def test_missing_name_is_an_error() -> None:
    for meta in (None, {}, {"name": ""}, {"name": 5}):
        with pytest.raises(InvalidSpec) as e:
            EnvironmentIsolation.from_body(
                {"metadata": meta, "spec": {"segments": [{"name": "a"}]}}
            )
        assert str(e.value) == "metadata.name: required"
    with pytest.raises(InvalidSpec) as e:
        EnvironmentIsolation.from_body({"metadata": "x", "spec": {}})
    assert str(e.value) == "metadata: must be an object, got str"


def test_namespace_facts_imply_the_name_label_and_see_termination() -> None:
    ns = NamespaceFacts.from_body(
        {"metadata": {"name": "a", "labels": {"x": "1"}}, "status": {"phase": "Terminating"}}
    )
    assert ns.label_map == {"kubernetes.io/metadata.name": "a", "x": "1"}
    assert ns.terminating
    assert not NamespaceFacts.from_body({"metadata": {"name": "b"}}).terminating
