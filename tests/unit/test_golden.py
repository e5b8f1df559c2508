"""Golden files: the exact policies and plans for every rule of the design doc."""

from __future__ import annotations

import os

import pytest

from tests.unit.golden import ROOT, cases, compute

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def test_there_are_enough_golden_cases() -> None:
    assert len(cases()) >= 15


@pytest.mark.parametrize("case", cases())
def test_golden(case: str) -> None:
    for name, text in compute(case).items():
        path = ROOT / case / name
        if UPDATE:
            path.write_text(text)
            continue
        assert path.exists(), f"{path} missing; run `make golden`"
        assert text == path.read_text(), f"{case}/{name} differs; run `make golden` if intended"
