"""`envisolation render` and friends, offline, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "three-segments.yaml"
NAMESPACES = ROOT / "examples" / "namespaces.yaml"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "envisolation", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_render_prints_a_sorted_yaml_stream_without_audit_segments() -> None:
    out = run("render", "-f", str(EXAMPLE), "--namespaces", str(NAMESPACES))
    assert out.returncode == 0, out.stderr
    docs = list(yaml.safe_load_all(out.stdout))
    keys = [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs]
    assert keys == sorted(keys)
    assert {k[0] for k in keys} == {"shop-dev", "shop-test"}  # prod is Audit


def test_as_enforce_previews_audit_segments() -> None:
    out = run(
        "render", "-f", str(EXAMPLE), "--namespaces", str(NAMESPACES), "--as-enforce", "-o", "json"
    )
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)["items"]
    prod = {i["metadata"]["name"] for i in items if i["metadata"]["namespace"] == "shop-prod"}
    assert "envisolation-allow-test-reads-prod-api" in prod
    assert not any(i["metadata"]["namespace"] in ("monitoring", "sandbox-prod") for i in items)


def test_kubectl_list_output_is_accepted(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(NAMESPACES.read_text()))
    listing = tmp_path / "ns.yaml"
    listing.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": docs}))
    a = run("render", "-f", str(EXAMPLE), "--namespaces", str(listing))
    b = run("render", "-f", str(EXAMPLE), "--namespaces", str(NAMESPACES))
    assert a.returncode == 0
    assert a.stdout == b.stdout


def test_bad_input_exits_2_with_a_message_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: envisolation.io/v1alpha1\nkind: EnvironmentIsolation\nmetadata: {name: x}\n"
        "spec:\n  segments: [{name: dev}]\n  allow: [{name: r, ingress: [{from: [{segment: qa}]}]}]\n"
    )
    out = run("render", "-f", str(bad), "--namespaces", str(NAMESPACES))
    assert out.returncode == 2
    assert "spec.allow[0].ingress[0].from[0].segment: unknown segment 'qa'" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_file_and_empty_input_exit_2() -> None:
    out = run("render", "-f", "nope.yaml", "--namespaces", str(NAMESPACES))
    assert out.returncode == 2
    assert "nope.yaml" in out.stderr
    out = run("render", "-f", "-", "--namespaces", str(NAMESPACES), stdin="kind: Namespace\n")
    assert out.returncode == 2
    assert "no EnvironmentIsolation found" in out.stderr
    out = run("render", "-f", "-", "--namespaces", str(NAMESPACES), stdin="a: [b\n")
    assert out.returncode == 2
    assert "not valid YAML" in out.stderr


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("envisolation ")
