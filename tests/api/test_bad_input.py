"""Invalid and hostile input, table-driven, against the real API server and operator.

Every case has one expected outcome:
  reject   the API server refuses it (schema or CEL) with a message naming the field
  report   accepted, and the operator reports it (Ready False, reason InvalidSpec, an Event)
           naming the field, without writing a single policy
  ok       accepted and handled as the spec says (hostile but valid input)
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.api.conftest import Kubectl, Operator, eventually

pytestmark = pytest.mark.api


def base(label: str) -> dict[str, Any]:
    return {
        "apiVersion": "envisolation.io/v1alpha1",
        "kind": "EnvironmentIsolation",
        "metadata": {"name": f"bad-{secrets.token_hex(4)}"},
        "spec": {"namespaceLabel": label, "segments": [{"name": "dev"}, {"name": "prod"}]},
    }


def allow(**rule: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        body["spec"]["allow"] = [{"name": "r", **rule}]

    return mutate


def ingress_port(**port: Any) -> Callable[[dict[str, Any]], None]:
    return allow(ingress=[{"from": [{"segment": "dev"}], "ports": [port]}])


def ingress_peer(**peer: Any) -> Callable[[dict[str, Any]], None]:
    return allow(ingress=[{"from": [peer]}])


def spec(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        body["spec"].update(fields)

    return mutate


def meta(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        body["metadata"].update(fields)

    return mutate


def drop(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        del body["spec"][key]

    return mutate


@dataclass(frozen=True)
class Case:
    id: str
    mutate: Callable[[dict[str, Any]], None]
    expect: str  # reject | report | ok
    names: tuple[str, ...] = ()  # substrings the message must contain (the field)
    extra: dict[str, Any] = field(default_factory=dict)


SEG = "spec.segments"
RULE = "spec.allow[0]"
PEER = f"{RULE}.ingress[0].from[0]"
PORT = f"{RULE}.ingress[0].ports[0]"
A_MIB = "x" * (1 << 20)

CASES = [
    # -- segments -----------------------------------------------------------------------
    Case("no-segments-field", drop("segments"), "reject", ("spec.segments",)),
    Case("empty-segments", spec(segments=[]), "reject", (SEG,)),
    Case("duplicate-segment", spec(segments=[{"name": "dev"}, {"name": "dev"}]), "reject", (SEG,)),
    Case("segment-not-dns-label", spec(segments=[{"name": "Dev_1"}]), "reject", (f"{SEG}[0].name",)),
    Case("segment-unicode", spec(segments=[{"name": "prød"}]), "reject", (f"{SEG}[0].name",)),
    Case("segment-too-long", spec(segments=[{"name": "a" * 64}]), "reject", (f"{SEG}[0].name",)),
    Case("thirteen-segments", spec(segments=[{"name": f"s{i}"} for i in range(13)]), "reject", (SEG,)),
    Case("segment-name-missing", spec(segments=[{"enforcement": "Audit"}]), "reject", (f"{SEG}[0].name",)),
    Case("segment-enforcement-unknown", spec(segments=[{"name": "dev", "enforcement": "Maybe"}]), "reject", (f"{SEG}[0].enforcement",)),
    Case("enforcement-yaml-off-boolean", spec(enforcement=False), "reject", ("spec.enforcement",)),
    Case("segment-selector-bad-operator", spec(segments=[{"name": "dev", "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Like"}]}}]), "reject", (f"{SEG}[0].namespaceSelector.matchExpressions[0].operator",)),
    Case("segment-selector-in-without-values", spec(segments=[{"name": "dev", "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}]), "reject", (f"{SEG}[0].namespaceSelector.matchExpressions[0]",)),
    # -- the label ------------------------------------------------------------------------
    Case("label-not-qualified-name", spec(namespaceLabel="env/x/y"), "reject", ("spec.namespaceLabel",)),
    Case("label-leading-dash", spec(namespaceLabel="-env"), "reject", ("spec.namespaceLabel",)),
    Case("label-unicode", spec(namespaceLabel="umgebung-ä"), "reject", ("spec.namespaceLabel",)),
    Case("label-too-long", spec(namespaceLabel="a" * 318), "reject", ("spec.namespaceLabel",)),
    Case("label-empty", spec(namespaceLabel=""), "reject", ("spec.namespaceLabel",)),
    # -- top-level fields ---------------------------------------------------------------
    Case("isolate-empty", spec(isolate=[]), "reject", ("spec.isolate",)),
    Case("isolate-unknown", spec(isolate=["Sideways"]), "reject", ("spec.isolate[0]",)),
    Case("same-segment-unknown", spec(sameSegment="Sometimes"), "reject", ("spec.sameSegment",)),
    Case("deletion-policy-unknown", spec(deletionPolicy="Shred"), "reject", ("spec.deletionPolicy",)),
    Case("dns-enabled-string", spec(dns={"enabled": "yes"}), "reject", ("spec.dns.enabled",)),
    Case("dns-namespace-not-dns-label", spec(dns={"namespace": "Kube System"}), "reject", ("spec.dns.namespace",)),
    Case("exclude-not-dns-label", spec(excludeNamespaces=["Not_A_Name"]), "reject", ("spec.excludeNamespaces[0]",)),
    Case("exclude-duplicate", spec(excludeNamespaces=["a", "a"]), "reject", ("spec.excludeNamespaces[1]",)),
    Case("unknown-field-1mib", spec(junk=A_MIB), "reject", ("spec.junk",)),
    Case("spec-not-an-object", lambda b: b.update(spec="dev,prod"), "reject", ("spec",)),
    # -- allow rules ---------------------------------------------------------------------
    Case("thousand-rules", spec(allow=[{"name": f"r{i}", "ingress": [{}]} for i in range(1000)]), "reject", ("spec.allow",)),
    Case("rule-without-direction", allow(), "reject", (RULE,)),
    Case("rule-name-not-dns-label", lambda b: b["spec"].update(allow=[{"name": "Web_In", "ingress": [{}]}]), "reject", (f"{RULE}.name",)),
    Case("rule-name-too-long", lambda b: b["spec"].update(allow=[{"name": "r" * 45, "ingress": [{}]}]), "reject", (f"{RULE}.name",)),
    Case("rule-duplicate-name", spec(allow=[{"name": "r", "ingress": [{}]}, {"name": "r", "egress": [{}]}]), "reject", ("spec.allow[1]",)),
    Case("rule-undeclared-segment", allow(segments=["staging"], ingress=[{}]), "reject", ("spec.allow", "segments")),
    Case("peer-undeclared-segment", ingress_peer(segment="staging"), "reject", ("spec.allow", "segment")),
    Case("peer-empty", ingress_peer(), "reject", (PEER,)),
    Case("peer-segment-and-namespace-selector", ingress_peer(segment="dev", namespaceSelector={}), "reject", (PEER,)),
    Case("peer-ipblock-and-pods", ingress_peer(ipBlock={"cidr": "10.0.0.0/8"}, podSelector={}), "reject", (PEER,)),
    Case("peer-bad-cidr", ingress_peer(ipBlock={"cidr": "10.0.0.300/8"}), "reject", (f"{PEER}.ipBlock",)),
    Case("peer-cidr-not-a-cidr", ingress_peer(ipBlock={"cidr": "everything"}), "reject", (f"{PEER}.ipBlock",)),
    Case("peer-except-outside-cidr", ingress_peer(ipBlock={"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}), "reject", (f"{PEER}.ipBlock",)),
    Case("peer-except-not-a-cidr", ingress_peer(ipBlock={"cidr": "10.0.0.0/16", "except": ["nope"]}), "reject", (f"{PEER}.ipBlock",)),
    Case("port-zero", ingress_port(port=0), "reject", (PORT,)),
    Case("port-65536", ingress_port(port=65536), "reject", (PORT,)),
    Case("port-negative", ingress_port(port=-1), "reject", (PORT,)),
    Case("end-port-below-port", ingress_port(port=8080, endPort=80), "reject", (PORT,)),
    Case("end-port-65536", ingress_port(port=80, endPort=65536), "reject", (f"{PORT}.endPort",)),
    Case("named-port-with-end-port", ingress_port(port="http", endPort=90), "reject", (PORT,)),
    Case("protocol-unknown", ingress_port(port=80, protocol="ICMP"), "reject", (f"{PORT}.protocol",)),
    Case("selector-value-too-long", allow(podSelector={"matchLabels": {"app": "x" * 64}}, ingress=[{}]), "reject", (f"{RULE}.podSelector.matchLabels",)),
    # -- the operator's own checks (what a schema cannot say) ------------------------------
    Case("named-port-not-iana-name", ingress_port(port="not a port name"), "report", (f"{PORT}.port",)),
    Case("selector-key-invalid-in-matchlabels", allow(podSelector={"matchLabels": {"bad key!": "x"}}, ingress=[{}]), "report", (f"{RULE}.podSelector.matchLabels",)),
    # -- hostile but valid ----------------------------------------------------------------
    Case("argo-tracking-label-and-annotation", meta(labels={"app.kubernetes.io/instance": "isolation"}, annotations={"argocd.argoproj.io/tracking-id": "isolation:envisolation.io/EnvironmentIsolation:/x"}), "ok"),
    Case("twelve-segments-32-rules", lambda b: b["spec"].update(segments=[{"name": f"s{i}"} for i in range(12)], allow=[{"name": f"r{i}", "segments": ["s0"], "ingress": [{"from": [{"segment": f"s{i % 12}"}], "ports": [{"port": 1000 + i}]}]} for i in range(32)]), "ok", extra={"segment": "s0"}),
]  # fmt: skip


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
        time.sleep(2)
        assert kubectl.policy_writes() == writes, "nothing half-applied"
        assert kubectl.policies(dev) == {}
    else:
        eventually(lambda: _ready(kubectl, name).get("status") == "True", timeout=30)
        assert "envisolation-default-deny" in kubectl.policies(dev)


# -- hostile namespace and policy states ------------------------------------------------------


def state_unknown_segment_values(
    k: Kubectl, label: str, make_ns: Callable[..., str], _: str
) -> None:
    spaces = [make_ns({label: v}) for v in ("staging", "Dev", "")]
    time.sleep(2)
    assert all(k.policies(ns) == {} for ns in spaces), "a value that names no segment: unmanaged"


def state_namespace_label_value_invalid(
    k: Kubectl, label: str, make_ns: Callable[..., str], _: str
) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": f"bad-{secrets.token_hex(3)}", "labels": {label: "prød" + "x" * 70}}}  # fmt: skip
    res = k("apply", "-f", "-", input=json.dumps(body), check=False)
    assert res.returncode != 0 and "metadata.labels" in res.stderr, res.stderr


def state_operator_and_system_namespaces(
    k: Kubectl, label: str, make_ns: Callable[..., str], _: str
) -> None:
    for ns in ("envisolation-system", "kube-system"):
        k("create", "namespace", ns, check=False)
        k("label", "namespace", ns, f"{label}=dev", "--overwrite")
    member = make_ns({label: "dev"})
    eventually(lambda: "envisolation-default-deny" in k.policies(member))
    time.sleep(1)
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
    k: Kubectl, label: str, make_ns: Callable[..., str], _: str
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
    time.sleep(3)
    assert k.policy_writes() == writes, "repaired once, then quiet"


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
