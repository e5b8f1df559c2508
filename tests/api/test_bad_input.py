"""Invalid and hostile input, table-driven (tests/bad_input.py), against the real API
server and operator."""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from envisolation.spec.model import EnvironmentIsolation, InvalidSpec
from tests.api.conftest import Kubectl, Operator, eventually
from tests.api.test_operator import sentinel
from tests.bad_input import CASES, Case, base, field_path

pytestmark = pytest.mark.api


def test_the_table_has_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


def _errors(kubectl: Kubectl, body: dict[str, Any]) -> str:
    res = kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False)
    return "" if res.returncode == 0 else res.stderr


@pytest.mark.parametrize("case", [c for c in CASES if c.expect == "reject"], ids=lambda c: c.id)
def test_rejected_by_the_api_server_naming_the_field(
    case: Case, kubectl: Kubectl, label: str
) -> None:
    body = base(label)
    case.mutate(body)
    err = _errors(kubectl, body)
    assert err, f"{case.id}: the API server accepted it"
    for name in case.names:
        assert name in err, f"{case.id}: {name!r} not named in:\n{err[:2000]}"
    # The operator's own parser refuses it too, and both name the same field: the API
    # server names the parser's path or (for a rule over the whole spec) a prefix of it.
    with pytest.raises(InvalidSpec) as parsed:
        EnvironmentIsolation.from_body(body)
    path = field_path(str(parsed.value))
    named = set(re.findall(r"spec(?:\.[A-Za-z]+|\[\d+\])*", err))
    assert any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in named), (
        f"{case.id}: the parser names {path}, the API server {sorted(named)}:\n{err[:2000]}"
    )


def _ready(kubectl: Kubectl, name: str) -> dict[str, Any]:
    status = kubectl.json("get", "enviso", name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


@pytest.mark.parametrize("case", [c for c in CASES if c.expect != "reject"], ids=lambda c: c.id)
def test_accepted_input_is_reported_or_handled_without_half_applying(
    case: Case,
    kubectl: Kubectl,
    operator: Operator,
    label: str,
    make_ns: Callable[..., str],
    make_iso: Callable[..., str],
) -> None:
    dev = make_ns({label: case.extra.get("segment", "dev")})
    body = base(label)
    case.mutate(body)
    assert not _errors(kubectl, body), "the API server must accept this case"
    writes = kubectl.policy_writes()
    spec = copy.deepcopy(body["spec"])
    name = make_iso(spec.pop("namespaceLabel"), **spec)
    if body["metadata"].get("labels") or body["metadata"].get("annotations"):
        md = {k: body["metadata"][k] for k in ("labels", "annotations") if k in body["metadata"]}
        kubectl("patch", "enviso", name, "--type=merge", "-p", json.dumps({"metadata": md}))
    if case.expect == "report":
        ready = eventually(lambda: _ready(kubectl, name).get("reason") == "InvalidSpec" and _ready(kubectl, name), timeout=30)  # fmt: skip
        assert ready["status"] == "False"
        for n in case.names:
            assert n in ready["message"], ready["message"]
        events = kubectl("get", "events", "--field-selector",
                         f"involvedObject.name={name},reason=InvalidSpec", "-A").stdout  # fmt: skip
        assert name in events or "InvalidSpec" in events
        # The sign: InvalidSpec is reported by the pass that refused the spec, after any
        # write that pass would have made.
        assert kubectl.policy_writes() == writes, "nothing half-applied"
        assert kubectl.policies(dev) == {}
    else:
        eventually(lambda: _ready(kubectl, name).get("status") == "True", timeout=30)
        assert "envisolation-default-deny" in kubectl.policies(dev)
        if "policy" in case.extra:  # rendered as the spec says and accepted by the API server
            kept = kubectl.policies(dev)[case.extra["policy"]]
            rule = body["spec"]["allow"][0]
            for key in ("ingress", "egress"):
                assert kept["spec"].get(key) == rule.get(key), (key, kept["spec"])


# -- hostile namespace and policy states ------------------------------------------------------


def state_unknown_segment_values(
    k: Kubectl, label: str, make_ns: Callable[..., str], iso: str
) -> None:
    spaces = [make_ns({label: v}) for v in ("staging", "Dev", "")]
    sentinel(k, iso, label, make_ns)
    assert all(k.policies(ns) == {} for ns in spaces), "a value that names no segment: unmanaged"


def state_namespace_label_value_invalid(
    k: Kubectl, label: str, make_ns: Callable[..., str], _: str
) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": f"bad-{secrets.token_hex(3)}", "labels": {label: "prød" + "x" * 70}}}  # fmt: skip
    res = k("apply", "-f", "-", input=json.dumps(body), check=False)
    assert res.returncode != 0 and "metadata.labels" in res.stderr, res.stderr


def state_operator_and_system_namespaces(
    k: Kubectl, label: str, make_ns: Callable[..., str], iso: str
) -> None:
    for ns in ("envisolation-system", "kube-system"):
        k("create", "namespace", ns, check=False)
        k("label", "namespace", ns, f"{label}=dev", "--overwrite")
    sentinel(k, iso, label, make_ns)  # after the labels: they were handled
    try:
        for ns in ("envisolation-system", "kube-system"):
            assert not any(n.startswith("envisolation-") for n in k.policies(ns)), ns
    finally:
        for ns in ("envisolation-system", "kube-system"):
            k("label", "namespace", ns, f"{label}-")


def state_namespace_in_two_isolations(
    k: Kubectl, label: str, make_ns: Callable[..., str], first: str
) -> None:
    second = f"bad-second-{secrets.token_hex(3)}"
    body = base(label)
    body["metadata"]["name"] = second
    k.apply(json.dumps(body))
    try:
        ns = make_ns({label: "dev"})

        def conflict() -> bool:
            conds = (k.json("get", "enviso", first).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Conflict" and c["status"] == "True" for c in conds)

        eventually(conflict)
        eventually(lambda: set(k.policies(ns)) == {"envisolation-default-deny"})
    finally:
        k("delete", "enviso", second, "--wait=false")


def state_squatter_with_our_name(
    k: Kubectl, label: str, make_ns: Callable[..., str], iso: str
) -> None:
    ns = make_ns()
    squat = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "envisolation-default-deny", "namespace": ns},
             "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                      "ingress": [{"from": [{"namespaceSelector": {}}]}]}}  # fmt: skip
    k.apply(json.dumps(squat))
    k("label", "namespace", ns, f"{label}=dev")
    eventually(lambda: "ingress" not in k.policies(ns)["envisolation-default-deny"]["spec"])
    writes = k.policy_writes()
    after = sentinel(k, iso, label, make_ns)  # the repair's echo was handled: no second write
    assert k.policy_writes() - writes == len(k.policies(after)), "repaired once, then quiet"


def state_extra_rule_added_by_hand(
    k: Kubectl, label: str, make_ns: Callable[..., str], _: str
) -> None:
    ns = make_ns({label: "dev"})
    eventually(lambda: "envisolation-default-deny" in k.policies(ns))
    hole = {"spec": {"ingress": [{"from": [{"namespaceSelector": {}}]}]}}
    k("patch", "networkpolicy", "-n", ns, "envisolation-default-deny", "--type=merge",
      "-p", json.dumps(hole))  # fmt: skip
    eventually(lambda: "ingress" not in k.policies(ns)["envisolation-default-deny"]["spec"])


STATES = {
    "label-values-naming-no-segment": state_unknown_segment_values,
    "label-value-not-allowed-by-the-api": state_namespace_label_value_invalid,
    "operator-and-kube-system-namespace-in-a-segment": state_operator_and_system_namespaces,
    "namespace-in-two-isolations": state_namespace_in_two_isolations,
    "foreign-policy-squatting-our-name": state_squatter_with_our_name,
    "extra-rule-added-to-our-default-deny": state_extra_rule_added_by_hand,
}


@pytest.mark.parametrize("case", sorted(STATES))
def test_hostile_namespace_and_policy_states(
    case: str,
    kubectl: Kubectl,
    operator: Operator,
    label: str,
    make_ns: Callable[..., str],
    make_iso: Callable[..., str],
) -> None:
    name = make_iso(label)
    STATES[case](kubectl, label, make_ns, name)
