"""Golden files: the exact policies and plans for every rule of the design doc.

A case's folder holds input.yaml (and options.yaml), and the files `compute` writes:
expected.yaml always, plan.yaml when the input has live policies. Any other file there is
stale (a plan.yaml the code no longer produces, say) and fails the test. `make golden`
(UPDATE_GOLDEN=1) rewrites them, removes stale ones, and prints what it changed.
"""

from __future__ import annotations

import os

import pytest

from tests.unit.golden import ROOT, cases, compute

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
INPUTS = {"input.yaml", "options.yaml"}


def test_there_are_enough_golden_cases() -> None:
    assert len(cases()) >= 15


@pytest.mark.parametrize("case", cases())
def test_golden(case: str) -> None:
    want = compute(case)
    stale = sorted(p.name for p in (ROOT / case).iterdir() if p.name not in INPUTS | set(want))
    if UPDATE:
        for name in stale:
            (ROOT / case / name).unlink()
            print(f"golden: removed {case}/{name} (no longer produced)")
        for name, text in want.items():
            path = ROOT / case / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                print(f"golden: rewrote {case}/{name}")
        return
    assert not stale, f"{case}: {stale} no longer produced by the code; run `make golden`"
    for name, text in want.items():
        path = ROOT / case / name
        assert path.exists(), f"{path} missing; run `make golden`"
        assert text == path.read_text(), f"{case}/{name} differs; run `make golden` if intended"
