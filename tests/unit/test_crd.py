"""The CRD: generated from hack/gen_crd.py, structural, described field by field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from envisolation.spec.schema import crd

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "environmentisolations.envisolation.io.yaml"


def test_committed_crd_is_what_the_generator_prints() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_crd.py"), "--check"], check=False
    )
    assert res.returncode == 0, "crds/ is stale: run `make crd`"


def test_committed_crd_is_what_schema_py_builds() -> None:
    """In this process too (the check above runs the generator as a child): any change
    to the schema's fields, rules, messages or descriptions shows here."""
    assert yaml.safe_load(CRD.read_text()) == crd()


def _walk(node: dict[str, Any], path: str) -> list[str]:
    scalar_item = path.endswith("[]") and node.get("type") != "object"
    exempt = scalar_item or path.endswith(".metadata")
    missing = [] if "description" in node or exempt else [path]
    for name, child in (node.get("properties") or {}).items():
        missing += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        missing += _walk(node["items"], f"{path}[]")
    return missing


def test_every_field_has_a_description() -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema, "") == []


def test_names_columns_and_scope() -> None:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]
    assert spec["scope"] == "Cluster"
    assert spec["names"]["shortNames"] == ["enviso"]
    assert spec["names"]["categories"] == ["envisolation"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    cols = [c["name"].upper() for c in version["additionalPrinterColumns"]]
    assert cols == ["ENFORCEMENT", "SEGMENTS", "NAMESPACES", "POLICIES", "READY", "AGE"]


def test_the_charts_generated_templates_and_the_readme_values_table_are_current() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_chart.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + "run `make crd`"
