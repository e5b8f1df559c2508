"""`envisolation explain SRC DST`, offline: the verdict, the policies on each side, the
rule that admits (or the default-deny that stops), and whether the spec declares it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.unit.incli import run

ROOT = Path(__file__).resolve().parents[2]


def pod(ns: str, name: str, app: str, ip: str = "", named: bool = False) -> dict:
    ports = [{"containerPort": 80, "name": "http"}] if named else []
    body: dict = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
                  "spec": {"containers": [{"name": "c", "image": "i", "ports": ports}]}}  # fmt: skip
    if ip:
        body["status"] = {"podIP": ip}
    return body


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three-segment example (prod enforced), its policies as `render` keeps them, pods."""
    d = tmp_path_factory.mktemp("explain")
    iso = yaml.safe_load((ROOT / "examples" / "three-segments.yaml").read_text())
    iso["spec"]["segments"][2]["enforcement"] = "Enforce"
    (d / "iso.yaml").write_text(yaml.safe_dump(iso))
    nss = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s, "labels": {"environment": s}}}
           for s in ("dev", "test", "prod")]  # fmt: skip
    (d / "ns.yaml").write_text(yaml.safe_dump_all(nss))
    rendered = run("render", "-f", str(d / "iso.yaml"), "--namespaces", str(d / "ns.yaml"))
    assert rendered.returncode == 0, rendered.stderr
    (d / "managed.yaml").write_text(rendered.stdout)
    pods = [pod("dev", "fe-1", "frontend", ip="10.1.0.5"), pod("dev", "be-1", "backend", named=True),
            pod("test", "fe-2", "frontend"), pod("prod", "api-1", "api")]  # fmt: skip
    (d / "pods.yaml").write_text(yaml.safe_dump_all(pods))
    shutil.copy(d / "iso.yaml", d / "iso-copy.yml.bak")  # not a manifest suffix: ignored
    return d


def test_allowed_names_the_admitting_rules_and_exits_0(state: Path) -> None:
    res = run("explain", "dev/fe-1", "dev/be-1", "--port", "TCP/80", "--from", str(state))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("dev/fe-1[Pod] -> dev/be-1[Pod] on TCP 80: ALLOWED: TCP 80\n")
    assert "admitted by dev/envisolation-same-segment egress[0]: TCP 80" in res.stdout
    assert "admitted by dev/envisolation-allow-frontend-to-backend ingress[0]: TCP 80" in res.stdout
    assert "segments: both in dev (environments); sameSegment allows it" in res.stdout


def test_denied_names_the_default_deny_and_says_undeclared_and_exits_1(state: Path) -> None:
    res = run("explain", "dev/fe-1", "prod/api-1", "--from", str(state))
    assert res.returncode == 1, res.stderr
    assert "dev/fe-1[Pod] -> prod/api-1[Pod]: DENIED" in res.stdout
    assert (
        "no rule admits this flow: denied (the default-deny dev/envisolation-default-deny isolates it)"
        in res.stdout
    )
    assert "segments: dev -> prod is NOT declared in environments's spec" in res.stdout


def test_declared_cross_segment_flow(state: Path) -> None:
    res = run("explain", "test/fe-2", "prod/api-1", "--port", "tcp/8443", "--from", str(state))
    assert res.returncode == 0, res.stdout
    assert (
        "admitted by prod/envisolation-allow-test-reads-prod-api ingress[0]: TCP 8443" in res.stdout
    )
    assert (
        "admitted by test/envisolation-allow-test-calls-prod-api egress[0]: TCP 8443" in res.stdout
    )
    assert "segments: test -> prod is declared in environments's spec" in res.stdout
    assert (
        run(
            "explain", "test/fe-2", "prod/api-1", "--port", "TCP/8444", "--from", str(state)
        ).returncode
        == 1
    )


def test_an_ip_names_a_pod_or_an_outside_address(state: Path) -> None:
    res = run("explain", "10.1.0.5", "8.8.8.8", "--port", "UDP/53", "--from", str(state))
    assert res.returncode == 1
    assert res.stdout.startswith("dev/fe-1[Pod] -> 8.8.8.8-8.8.8.8[External] on UDP 53: DENIED")
    assert "ingress: the destination is outside the cluster" in res.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("dev/nope", "dev/be-1"), "dev/nope: no workload or pod of that name in namespace dev"),
    (("nonsense", "dev/be-1"), "nonsense: expected NAMESPACE/NAME"),
    (("dev/fe-1", "dev/be-1", "--port", "TCP/99999"), "--port TCP/99999: expected PROTO/PORT"),
])  # fmt: skip
def test_bad_input_exits_2_naming_it(state: Path, args: tuple[str, ...], message: str) -> None:
    res = run("explain", *args, "--from", str(state))
    assert res.returncode == 2 and message in res.stderr, res.stderr
