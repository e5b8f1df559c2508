"""The Argo CD health check, run in Lua 5.1 (Argo CD's interpreter) against sample objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (ROOT / "examples" / "argocd" / "health.lua").read_text()


def health(obj: dict[str, Any]) -> dict[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT)
    return {"status": result["status"], "message": result["message"]}


def iso(generation: int, observed: int | None, *conditions: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "env", "generation": generation}}
    if observed is not None:
        obj["status"] = {"observedGeneration": observed, "conditions": list(conditions)}
    return obj


def cond(
    ctype: str, status: str, reason: str = "R", gen: int = 2, message: str = "m"
) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": gen,
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (iso(1, None), "Progressing"),
        (iso(2, 1, cond("Ready", "True", gen=1)), "Progressing"),
        (
            iso(2, 2, cond("Ready", "True"), cond("Conflict", "False"), cond("Exposed", "Unknown")),
            "Healthy",
        ),
        (iso(2, 2, cond("Ready", "True", gen=1)), "Progressing"),
        (iso(2, 2, cond("Ready", "False", "Progressing")), "Progressing"),
        (
            iso(2, 2, cond("Ready", "False", "InvalidSpec", message="spec.allow[0]: bad")),
            "Degraded",
        ),
        (iso(2, 2, cond("Ready", "True"), cond("Conflict", "True", message="ns a")), "Degraded"),
        (iso(2, 2, cond("Ready", "True"), cond("Exposed", "True")), "Degraded"),
        (iso(2, 2), "Progressing"),
    ],
)
def test_health(obj: dict[str, Any], expected: str) -> None:
    assert health(obj)["status"] == expected


def test_degraded_message_says_why() -> None:
    out = health(iso(2, 2, cond("Ready", "False", "InvalidSpec", message="spec.allow[0]: bad")))
    assert out["message"] == "InvalidSpec: spec.allow[0]: bad"


def test_the_argocd_cm_snippet_is_the_script() -> None:
    cm = yaml.safe_load((ROOT / "examples" / "argocd" / "argocd-cm-health.yaml").read_text())
    assert (
        cm["data"]["resource.customizations.health.envisolation.io_EnvironmentIsolation"] == SCRIPT
    )
