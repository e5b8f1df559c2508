"""An EnvironmentIsolation as the parser builds it, every field compared: the defaults of
a minimal spec (the CRD's), and a spec that sets every field."""

from __future__ import annotations

import dataclasses
from typing import Any

from envisolation.spec.model import Enforcement, EnvironmentIsolation

MINIMAL: dict[str, Any] = {
    "name": "env",
    "namespace_label": "environment",
    "enforcement": Enforcement.ENFORCE,
    "isolate": ("Ingress", "Egress"),
    "segments": ({"name": "dev", "enforcement": Enforcement.ENFORCE, "namespace_selector": None},),
    "same_segment": True,
    "dns": {
        "enabled": True,
        "namespace": "kube-system",
        "pod_selector": {"match_labels": (("k8s-app", "kube-dns"),), "match_expressions": ()},
        "ports": (
            {"protocol": "UDP", "port": 53, "end_port": None},
            {"protocol": "TCP", "port": 53, "end_port": None},
        ),
    },
    "allow": (),
    "exclude_namespaces": frozenset(),
    "deletion_policy": "Orphan",
    "uid": "",
    "generation": 0,
    "created": "",
    "deleting": False,
}

FULL_BODY: dict[str, Any] = {
    "metadata": {
        "name": "env",
        "uid": "u-1",
        "generation": 7,
        "creationTimestamp": "2026-01-02T03:04:05Z",
        "deletionTimestamp": "2026-02-02T00:00:00Z",
    },
    "spec": {
        "namespaceLabel": "example.com/tier",
        "enforcement": "Audit",
        "isolate": ["Ingress"],
        "sameSegment": "Deny",
        "deletionPolicy": "Delete",
        "excludeNamespaces": ["b", "a"],
        "segments": [
            {"name": "dev", "enforcement": "Off"},
            {
                "name": "prod",
                "enforcement": "Enforce",
                "namespaceSelector": {"matchLabels": {"team": "x"}},
            },
        ],
        "dns": {
            "enabled": False,
            "namespace": "dns",
            "podSelector": {"matchLabels": {"app": "coredns"}},
            "ports": [{"protocol": "UDP", "port": 5353}],
        },
        "allow": [
            {
                "name": "r",
                "segments": ["prod"],
                "podSelector": {"matchLabels": {"app": "api"}},
                "ingress": [
                    {
                        "from": [
                            {"segment": "dev", "podSelector": {"matchLabels": {"app": "web"}}},
                            {"namespaceSelector": {"matchLabels": {"ops": "yes"}}},
                            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                        ],
                        "ports": [{"port": 8443}, {"protocol": "SCTP", "port": 1, "endPort": 9}],
                    }
                ],
                "egress": [{}],
            },
            {"name": "s", "egress": [{"to": [{"segment": "prod"}]}]},
        ],
    },
}

FULL: dict[str, Any] = {
    "name": "env",
    "namespace_label": "example.com/tier",
    "enforcement": Enforcement.AUDIT,
    "isolate": ("Ingress",),
    "segments": (
        {"name": "dev", "enforcement": Enforcement.OFF, "namespace_selector": None},
        {
            "name": "prod",
            "enforcement": Enforcement.ENFORCE,
            "namespace_selector": {"match_labels": (("team", "x"),), "match_expressions": ()},
        },
    ),
    "same_segment": False,
    "dns": {
        "enabled": False,
        "namespace": "dns",
        "pod_selector": {"match_labels": (("app", "coredns"),), "match_expressions": ()},
        "ports": ({"protocol": "UDP", "port": 5353, "end_port": None},),
    },
    "allow": (
        {
            "name": "r",
            "segments": ("prod",),
            "pod_selector": {"match_labels": (("app", "api"),), "match_expressions": ()},
            "ingress": (
                {
                    "peers": (
                        {
                            "pod_selector": {
                                "match_labels": (("app", "web"),),
                                "match_expressions": (),
                            },
                            "namespace_selector": None,
                            "ip_block": None,
                            "segment": "dev",
                        },
                        {
                            "pod_selector": None,
                            "namespace_selector": {
                                "match_labels": (("ops", "yes"),),
                                "match_expressions": (),
                            },
                            "ip_block": None,
                            "segment": None,
                        },
                        {
                            "pod_selector": None,
                            "namespace_selector": None,
                            "ip_block": {"cidr": "10.0.0.0/8", "except_": ("10.1.0.0/16",)},
                            "segment": None,
                        },
                    ),
                    "ports": (
                        {"protocol": "TCP", "port": 8443, "end_port": None},
                        {"protocol": "SCTP", "port": 1, "end_port": 9},
                    ),
                },
            ),
            "egress": ({"peers": None, "ports": None},),
        },
        {
            "name": "s",
            "segments": (),
            "pod_selector": {"match_labels": (), "match_expressions": ()},
            "ingress": None,
            "egress": (
                {
                    "peers": (
                        {
                            "pod_selector": None,
                            "namespace_selector": None,
                            "ip_block": None,
                            "segment": "prod",
                        },
                    ),
                    "ports": None,
                },
            ),
        },
    ),
    "exclude_namespaces": frozenset({"b", "a"}),
    "deletion_policy": "Delete",
    "uid": "u-1",
    "generation": 7,
    "created": "2026-01-02T03:04:05Z",
    "deleting": True,
}


def test_a_minimal_spec_takes_every_default() -> None:
    iso = EnvironmentIsolation.from_body(
        {"metadata": {"name": "env"}, "spec": {"segments": [{"name": "dev"}]}}
    )
    assert dataclasses.asdict(iso) == MINIMAL


def test_every_field_is_read() -> None:
    assert dataclasses.asdict(EnvironmentIsolation.from_body(FULL_BODY)) == FULL


def test_an_isolation_record_keeps_what_parsing_and_status_need() -> None:
    from envisolation.spec.model import IsolationRecord

    body = {
        "metadata": {"name": "env", "uid": "u", "generation": 3, "resourceVersion": 12,
                     "creationTimestamp": "T0", "deletionTimestamp": "T1", "labels": {"x": "y"},
                     "finalizers": ["envisolation.io/cleanup"], "managedFields": [{}]},
        "spec": {"segments": [{"name": "dev"}], "deletionPolicy": "Delete"},
        "status": {"observedGeneration": 2},
    }  # fmt: skip
    r = IsolationRecord.from_body(body)
    assert r == IsolationRecord(
        name="env", uid="u", generation=3, deleting=True,
        body={"metadata": {"name": "env", "uid": "u", "generation": 3, "creationTimestamp": "T0",
                           "deletionTimestamp": "T1"}, "spec": body["spec"]},
        status={"observedGeneration": 2}, finalizers=("envisolation.io/cleanup",),
        resource_version="12",
    )  # fmt: skip
    assert (r.deletion_policy, r.key) == ("Delete", ("u", 3, True))
    assert r.parse().deleting and r.parse().generation == 3
    empty = IsolationRecord.from_body({"metadata": {"generation": None}})
    assert empty == IsolationRecord(
        "", "", 0, False, {"metadata": {"generation": None}, "spec": {}}, {}
    )
    assert empty.deletion_policy == "Orphan"
    assert IsolationRecord.from_body({}).generation == 0  # absent, not only null


def test_namespace_facts() -> None:
    from envisolation.spec.model import NamespaceFacts

    ns = NamespaceFacts.from_body({"metadata": {"name": "a", "labels": {"z": 1, "b": "2"}}})
    assert ns == NamespaceFacts("a", (("b", "2"), ("kubernetes.io/metadata.name", "a"), ("z", "1")))
    own = NamespaceFacts.from_body(
        {"metadata": {"name": "a", "labels": {"kubernetes.io/metadata.name": "other"}}}
    )
    assert own.labels == (("kubernetes.io/metadata.name", "other"),)  # the server's own value
    gone = NamespaceFacts.from_body({"metadata": {"name": "a", "deletionTimestamp": "T"}})
    assert gone.terminating
    assert NamespaceFacts.from_body({"status": {"phase": "Active"}}) == NamespaceFacts(
        "", (("kubernetes.io/metadata.name", ""),), False
    )
