"""`make demo` works end to end (its own cluster, the operator, the example)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.api
ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_through_and_cleans_up(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    res = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "demo"), "--once", "--dir", str(d)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    table = res.stdout.split("$ kubectl get environmentisolations\n", 1)[1].splitlines()
    assert table[0].split() == [
        "NAME",
        "ENFORCEMENT",
        "SEGMENTS",
        "NAMESPACES",
        "POLICIES",
        "READY",
        "AGE",
    ]
    assert table[1].split()[:6] == ["environments", "Enforce", "dev,test,prod", "3", "9", "True"]
    assert "envisolation-default-deny" in res.stdout
    assert "kubectl label ns shop-dev environment=prod" in res.stdout
    assert not (d / "state.json").exists(), "the demo left its cluster running"
