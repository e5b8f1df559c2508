"""The bad-input table: EnvironmentIsolations the API server or the operator must refuse.

One table, run through both validators, which must agree: tests/api/test_bad_input.py
applies every case to the real API server (CRD schema and CEL), tests/unit/test_spec_agreement.py
parses every case with the operator's own parser (what `envisolation render` and the
operator use), and the API tier checks that both name the same field path.

Every case has one expected outcome:
  reject   the API server refuses it (schema or CEL) with a message naming the field
  report   accepted, and the operator reports it (Ready False, reason InvalidSpec, an Event)
           naming the field, without writing a single policy
  ok       accepted and handled as the spec says (hostile but valid input)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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
    Case("peer-ipv6-except-outside-cidr", ingress_peer(ipBlock={"cidr": "2001:db8::/32", "except": ["2001:db9::/48"]}), "reject", (f"{PEER}.ipBlock",)),
    Case("peer-except-of-the-other-family", ingress_peer(ipBlock={"cidr": "2001:db8::/32", "except": ["10.0.0.0/8"]}), "reject", (f"{PEER}.ipBlock",)),
    Case("peer-ipv4-cidr-ipv6-except", ingress_peer(ipBlock={"cidr": "10.0.0.0/8", "except": ["2001:db8::/48"]}), "reject", (f"{PEER}.ipBlock",)),
    Case("peer-ipv6-prefix-129", ingress_peer(ipBlock={"cidr": "2001:db8::/129"}), "reject", (f"{PEER}.ipBlock",)),
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
    Case("ipv6-ip-blocks-with-except", allow(ingress=[{"from": [{"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}, {"ipBlock": {"cidr": "::/0", "except": ["2001:db8::/32"]}}]}], egress=[{"to": [{"ipBlock": {"cidr": "fd00::/8"}}]}]), "ok", extra={"policy": "envisolation-allow-r"}),
    Case("twelve-segments-32-rules", lambda b: b["spec"].update(segments=[{"name": f"s{i}"} for i in range(12)], allow=[{"name": f"r{i}", "segments": ["s0"], "ingress": [{"from": [{"segment": f"s{i % 12}"}], "ports": [{"port": 1000 + i}]}]} for i in range(32)]), "ok", extra={"segment": "s0"}),
]  # fmt: skip


def field_path(message: str) -> str:
    """The field path an InvalidSpec message starts with (`spec.x[0].y: what is wrong`)."""
    return message.split(": ", 1)[0]
