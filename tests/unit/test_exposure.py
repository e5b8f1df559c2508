"""Exposure detection and `envisolation verify`, offline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from envisolation.analysis.verify import reports_from_objects
from envisolation.cli import render_all
from envisolation.policy.render import RenderContext
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts
from tests.unit import incli

ROOT = Path(__file__).resolve().parents[2]
CTX = RenderContext()


def iso(**spec: Any) -> dict[str, Any]:
    spec.setdefault("segments", [{"name": "dev"}, {"name": "prod"}])
    return {
        "apiVersion": "envisolation.io/v1alpha1",
        "kind": "EnvironmentIsolation",
        "metadata": {"name": "env"},
        "spec": spec,
    }


def ns(name: str, seg: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"environment": seg}},
    }


def world(cr: dict[str, Any], *extra: dict[str, Any]) -> list[dict[str, Any]]:
    spaces = [ns("app-dev", "dev"), ns("app-prod", "prod"), ns("db-prod", "prod")]
    rendered = render_all(
        [EnvironmentIsolation.from_body(cr)], [NamespaceFacts.from_body(n) for n in spaces], CTX
    )
    return [cr, *spaces, *[dict(p) for p in rendered], *extra]


def tenant(namespace: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "tenant", "namespace": namespace},
        "spec": spec,
    }


def test_the_operators_own_policies_expose_nothing() -> None:
    (r,) = reports_from_objects(world(iso()), CTX)
    assert r.exposures == ()
    assert r.matrix[("dev", "prod")] == "isolated"
    assert r.matrix[("prod", "prod")] == "allowed"


def test_a_tenant_policy_admitting_all_namespaces_exposes_prod_to_dev() -> None:
    cr = iso(isolate=["Ingress"])
    bad = tenant("app-prod", podSelector={"matchLabels": {"app": "web"}},
                 ingress=[{"from": [{"namespaceSelector": {}}], "ports": [{"port": 8080}]}])  # fmt: skip
    (r,) = reports_from_objects(world(cr, bad), CTX)
    assert r.matrix[("dev", "prod")] == "exposed"
    (e,) = r.exposures
    assert (e.source, e.destination, str(e.conns), e.policies) == (
        "app-dev",
        "app-prod",
        "TCP 8080",
        ("app-prod/tenant",),
    )


def test_isolated_egress_on_the_other_side_keeps_the_path_closed() -> None:
    bad = tenant("app-prod", ingress=[{"from": [{"namespaceSelector": {}}]}])
    (r,) = reports_from_objects(world(iso(), bad), CTX)
    assert [e for e in r.exposures if e.source == "app-dev"] == []


def test_declared_cross_segment_rules_are_not_exposures() -> None:
    rule = {
        "name": "dev-to-prod",
        "segments": ["prod"],
        "ingress": [{"from": [{"segment": "dev"}], "ports": [{"port": 443}]}],
    }
    cr = iso(isolate=["Ingress"], allow=[rule])
    (r,) = reports_from_objects(world(cr), CTX)
    assert r.exposures == ()
    assert r.matrix[("dev", "prod")] == "allowed"
    wider = tenant(
        "app-prod",
        ingress=[
            {
                "from": [{"namespaceSelector": {"matchLabels": {"environment": "dev"}}}],
                "ports": [{"port": 443}, {"port": 80}],
            }
        ],
    )
    (r,) = reports_from_objects(world(cr, wider), CTX)
    assert [str(e.conns) for e in r.exposures] == ["TCP 80"]


def test_wide_ip_blocks_are_possible_exposures() -> None:
    wide = tenant(
        "db-prod",
        ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}],
    )
    narrow = tenant("app-prod", ingress=[{"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}])
    (r,) = reports_from_objects(world(iso(), wide, narrow), CTX)
    assert [(e.source, e.destination) for e in r.exposures] == [
        ("ipBlock 0.0.0.0-9.255.255.255", "db-prod"),
        ("ipBlock 11.0.0.0-255.255.255.255", "db-prod"),
    ]


def test_verify_cli_exit_codes(tmp_path: Path) -> None:
    d = tmp_path / "repo"
    d.mkdir()
    (d / "world.yaml").write_text(yaml.safe_dump_all(world(iso(isolate=["Ingress"]))))

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return incli.run("verify", "--from", str(d), *args)

    ok = verify()
    assert ok.returncode == 0, ok.stderr
    assert "no exposures" in ok.stdout
    (d / "tenant.yaml").write_text(
        json.dumps(tenant("app-prod", ingress=[{"from": [{"namespaceSelector": {}}]}]))
    )
    bad = verify("-o", "json")
    assert bad.returncode == 1
    out = json.loads(bad.stdout)
    assert out[0]["matrix"]["dev->prod"] == "exposed"
    assert out[0]["exposures"][0]["policies"] == "app-prod/tenant"
    (d / "broken.yaml").write_text(
        "kind: EnvironmentIsolation\nmetadata: {name: x}\nspec: {segments: []}\n"
    )
    assert verify().returncode == 2


def test_a_policy_with_our_label_but_another_writer_is_reported_not_trusted() -> None:
    """Label spoofing: live objects prove ownership with managedFields, not with labels."""
    cr = iso(isolate=["Ingress"])
    spoof = tenant("app-prod", ingress=[{"from": [{"namespaceSelector": {}}]}])
    spoof["metadata"]["name"] = "envisolation-allow-sneaky"
    spoof["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "envisolation"}
    spoof["metadata"]["managedFields"] = [{"manager": "kubectl-client-side-apply"}]
    (r,) = reports_from_objects(world(cr, spoof), CTX)
    assert r.matrix[("dev", "prod")] == "exposed"
    assert {e.policies for e in r.exposures} == {("app-prod/envisolation-allow-sneaky",)}
    # An export without managedFields is judged by its label (nothing better is known).
    del spoof["metadata"]["managedFields"]
    (r,) = reports_from_objects(world(cr, spoof), CTX)
    assert r.matrix[("dev", "prod")] == "isolated"
