"""The chaos tier's oracle (tests/chaos/oracle.py) on states written here: it accepts what
the operator renders, and its independent expectation catches a missing policy and a
policy left behind in a namespace that left its segment (which the core-based check,
looking only at namespaces that carry the label, does not see)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from envisolation.cli import render_all
from envisolation.policy.render import RenderContext
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts
from tests.chaos import oracle
from tests.chaos.conftest import EVER

CTX = RenderContext(operator_namespace="envisolation-system")
NOT_TEAM_X = {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["x"]}]}


def cr(**spec: Any) -> dict[str, Any]:
    spec.setdefault("segments", [{"name": "dev"}, {"name": "test"},
                                 {"name": "prod", "namespaceSelector": NOT_TEAM_X}])  # fmt: skip
    return {"apiVersion": "envisolation.io/v1alpha1", "kind": "EnvironmentIsolation",
            "metadata": {"name": "iso"}, "spec": {"namespaceLabel": "oracle.test/env", **spec}}  # fmt: skip


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {**labels, "kubernetes.io/metadata.name": name}}}  # fmt: skip


SPECS = [{}, {"dns": {"enabled": False}}, {"sameSegment": "Deny", "isolate": ["Ingress"]},
         {"allow": [{"name": "a", "segments": ["prod"], "ingress": [{"from": [{"segment": "dev"}]}]}]},
         {"segments": [{"name": "dev"}, {"name": "prod", "enforcement": "Audit"}]}]  # fmt: skip


@pytest.mark.parametrize("spec", SPECS)
def test_the_oracle_accepts_the_rendered_state_and_catches_what_is_wrong(
    spec: dict[str, Any],
) -> None:
    label = "oracle.test/env"
    c = cr(**copy.deepcopy(spec))
    spaces = [ns("a", **{label: "dev"}), ns("b", **{label: "prod"}),
              ns("c", **{label: "prod", "team": "x"}), ns("d", **{label: "staging"}), ns("e")]  # fmt: skip
    iso = EnvironmentIsolation.from_body(c)
    pols = [dict(p) for p in render_all([iso], [NamespaceFacts.from_body(s) for s in spaces], CTX)]
    for p in pols:
        p["metadata"] = {
            **p["metadata"],
            "uid": "u",
            "managedFields": [{"manager": "envisolation"}],
        }
    EVER[label] = {"a", "b", "c", "d", "e"}  # e was labelled once, and left
    found, _ = oracle.problems([c, *spaces, *pols], label)
    assert found == []
    left = copy.deepcopy(pols[0])
    left["metadata"]["namespace"] = "e"
    found, _ = oracle.problems([c, *spaces, *pols, left], label)
    assert found == [f"e (independent): holds ['{left['metadata']['name']}'], the spec says []"]
    deny = [p for p in pols if p["metadata"]["namespace"] == "a"
            and p["metadata"]["name"] == "envisolation-default-deny"]  # fmt: skip
    found, _ = oracle.problems([c, *spaces, *[p for p in pols if p not in deny]], label)
    assert "a: missing envisolation-default-deny" in found
    assert any(x.startswith("a (independent): holds") for x in found)
