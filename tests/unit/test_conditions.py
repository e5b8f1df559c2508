"""Status: conditions that move only when they should, bounded lists."""

from __future__ import annotations

from envisolation.policy.conditions import Outcome, invalid_status, status_for
from envisolation.policy.render import RenderContext, decide
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts

ISO = EnvironmentIsolation.from_body(
    {
        "metadata": {"name": "env", "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"segments": [{"name": "dev"}]},
    }
)
OTHER = EnvironmentIsolation.from_body(
    {
        "metadata": {"name": "zzz", "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": {"namespaceLabel": "other", "segments": [{"name": "dev"}]},
    }
)


def outcome(name: str, converged: bool = True, error: str | None = None, **labels: str) -> Outcome:
    ns = NamespaceFacts.from_body(
        {"metadata": {"name": name, "labels": labels or {"environment": "dev"}}}
    )
    return Outcome.of(decide(ns, [ISO, OTHER], RenderContext()), converged, error)


def cond(status: dict, ctype: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def test_ready_when_every_namespace_converged() -> None:
    s = status_for(ISO, [outcome("a"), outcome("b")], None, "T1")
    assert cond(s, "Ready")["status"] == "True"
    assert s["namespaces"] == 2 and s["policies"] == 6 and s["observedGeneration"] == 3
    assert s["segments"] == [{"name": "dev", "enforcement": "Enforce", "namespaces": 2, "ready": 2}]


def test_last_transition_time_moves_only_with_the_status() -> None:
    first = status_for(ISO, [outcome("a")], None, "T1")
    same = status_for(ISO, [outcome("a")], first, "T2")
    assert same == first
    failed = status_for(ISO, [outcome("a", converged=False, error="403: forbidden")], first, "T3")
    ready = cond(failed, "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == (
        "False",
        "ApplyFailed",
        "T3",
    )
    assert "namespace a: 403: forbidden" in ready["message"]


def test_conflicts_are_reported_and_bounded() -> None:
    outs = [outcome(f"n{i:02}", environment="dev", other="dev") for i in range(25)]
    s = status_for(ISO, outs, None, "T")
    assert cond(s, "Conflict")["status"] == "True"
    assert s["conflictCount"] == 25 and len(s["conflicts"]) == 20
    assert s["conflicts"][0] == {"namespace": "n00", "isolations": ["env", "zzz"], "owner": "env"}
    assert s["policies"] == 25  # default-deny only


def test_invalid_spec_keeps_counts_and_says_what_to_fix() -> None:
    s = invalid_status(
        4, "spec.allow[0]: a rule needs ingress or egress", {"namespaces": 3, "policies": 9}, "T"
    )
    assert cond(s, "Ready")["reason"] == "InvalidSpec"
    assert s["namespaces"] == 3 and s["observedGeneration"] == 4


def test_invalid_spec_status_in_full() -> None:
    """Every field of the status for a spec that cannot be rendered; the counts are kept
    from the previous status (nothing was changed), anything else in it is dropped."""
    previous = {
        "namespaces": "3",
        "policies": 9,
        "segments": [{"name": "dev"}],
        "conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": "T0"},
            {"type": "Conflict", "status": "False", "lastTransitionTime": "T0"},
        ],
    }
    s = invalid_status(4, "spec.allow[0]: a rule needs ingress or egress", previous, "T")
    assert s == {
        "observedGeneration": 4,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "InvalidSpec",
             "message": "spec.allow[0]: a rule needs ingress or egress",
             "observedGeneration": 4, "lastTransitionTime": "T0"},
            {"type": "Conflict", "status": "Unknown", "reason": "InvalidSpec",
             "message": "spec is invalid", "observedGeneration": 4, "lastTransitionTime": "T"},
            {"type": "Exposed", "status": "Unknown", "reason": "NotChecked",
             "message": "exposure analysis not run", "observedGeneration": 4,
             "lastTransitionTime": "T"},
        ],
        "namespaces": 3,
        "policies": 9,
    }  # fmt: skip
    assert isinstance(s["namespaces"], int)
    only_policies = invalid_status(1, "m", {"policies": 2}, "T")
    assert "namespaces" not in only_policies and only_policies["policies"] == 2
    assert "policies" not in invalid_status(1, "m", {"namespaces": 2}, "T")
    assert "namespaces" not in invalid_status(1, "m", None, "T")
