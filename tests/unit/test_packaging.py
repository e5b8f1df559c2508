"""Packaging metadata that setuptools would otherwise warn about at every install."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_license_is_an_spdx_string_not_a_deprecated_table() -> None:
    project = tomllib.loads(PYPROJECT.read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])


def test_operator_is_a_source_root_not_a_package() -> None:
    root = PYPROJECT.parent / "operator"
    assert not (root / "__init__.py").exists(), "the standard library owns `operator`"
    assert (root / "envisolation" / "__init__.py").exists()
