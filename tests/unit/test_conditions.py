"""Status: conditions that move only when they should, bounded lists."""

from __future__ import annotations

from typing import Any

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


AUDIT = EnvironmentIsolation.from_body(
    {
        "metadata": {"name": "env", "generation": 2},
        "spec": {"segments": [{"name": "dev", "enforcement": "Audit"}, {"name": "prod"}]},
    }
)


def audited(name: str, seg: str, converged: bool = True, **kw: Any) -> Outcome:
    ns = NamespaceFacts.from_body({"metadata": {"name": name, "labels": {"environment": seg}}})
    return Outcome.of(decide(ns, [AUDIT], RenderContext()), converged, **kw)


def condition(ctype: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "observedGeneration": 2, "lastTransitionTime": "T"}  # fmt: skip


NO_CONFLICT = condition("Conflict", "False", "NoConflict", "no namespace is claimed twice")


def test_status_in_full_with_audit_segments_exposures_and_host_network() -> None:
    from tests.unit.test_exposure_parts import EXPOSURE

    outs = [audited("a", "dev", would_apply=3, would_delete=1), audited("b", "prod"),
            audited("c", "dev", would_apply=1)]  # fmt: skip
    s = status_for(AUDIT, outs, None, "T", exposures=[EXPOSURE] * 21, not_isolatable=["x"] * 21)
    assert s == {
        "observedGeneration": 2,
        "conditions": [
            condition("Ready", "True", "Reconciled",
                      "3 namespaces, 3 policies; Audit segments would change 5 policies"),
            NO_CONFLICT,
            condition("Exposed", "True", "CrossSegmentExposure",
                      "dev/app-dev -> prod/db: TCP 5432 via db/x, db/y (and 20 more)"),
        ],
        "namespaces": 3,
        "policies": 3,
        "segments": [
            {"name": "dev", "enforcement": "Audit", "namespaces": 2, "ready": 2,
             "wouldApply": 4, "wouldDelete": 1},
            {"name": "prod", "enforcement": "Enforce", "namespaces": 1, "ready": 1},
        ],
        "segmentNames": "dev,prod",
        "conflicts": [],
        "conflictCount": 0,
        "exposures": [EXPOSURE.as_status()] * 20,
        "exposureCount": 21,
        "notIsolatable": ["x"] * 20,
        "notIsolatableCount": 21,
    }  # fmt: skip


def test_ready_progressing_failed_and_exposed_conditions() -> None:
    from tests.unit.test_exposure_parts import EXPOSURE

    def conds(outs: list[Outcome], **kw: Any) -> list[dict[str, Any]]:
        return status_for(AUDIT, outs, None, "T", **kw)["conditions"]  # type: ignore[return-value]

    waiting = conds([audited("a", "dev", converged=False), audited("b", "prod")], exposures=[])
    assert waiting == [
        condition("Ready", "False", "Progressing", "1 of 2 namespaces converged"),
        NO_CONFLICT,
        condition("Exposed", "False", "NoExposure", "every cross-segment path is declared in the spec"),
    ]  # fmt: skip
    pending = conds([audited("a", "dev")], pending=True, exposures=[EXPOSURE])
    assert pending[0] == condition("Ready", "False", "Progressing", "1 of 1 namespaces converged")
    assert pending[2] == condition(
        "Exposed", "True", "CrossSegmentExposure", "dev/app-dev -> prod/db: TCP 5432 via db/x, db/y"
    )
    failed = conds([audited("a", "dev", False, error="e1"), audited("b", "prod", False, error="e2"),
                    audited("c", "prod", False, error="e3")])  # fmt: skip
    assert failed[0] == condition(
        "Ready", "False", "ApplyFailed", "namespace a: e1 (and 2 more namespaces)"
    )
    assert failed[2] == condition(
        "Exposed", "Unknown", "NotChecked", "exposure analysis has not run yet"
    )
    one = conds([audited("a", "dev", False, error="e1")])
    assert one[0]["message"] == "namespace a: e1"
    clean = conds([audited("b", "prod")])
    assert clean[0] == condition("Ready", "True", "Reconciled", "1 namespaces, 3 policies")


def test_outcome_keeps_the_decision_without_its_policies() -> None:
    ns = NamespaceFacts.from_body({"metadata": {"name": "a", "labels": {"environment": "dev"}}})
    d = decide(ns, [AUDIT], RenderContext())
    assert d.preview and not d.desired  # Audit: what Enforce would write, only previewed
    full = decide(NamespaceFacts.from_body(
        {"metadata": {"name": "b", "labels": {"environment": "prod"}}}), [AUDIT], RenderContext())  # fmt: skip
    o = Outcome.of(full, True)
    assert (o.decision.desired, o.decision.preview) == ((), ())
    assert o.decision.namespace == "b" and o.decision.segment == "prod"
    assert (o.converged, o.error, o.would_apply, o.would_delete, o.policies) == (
        True,
        None,
        0,
        0,
        3,
    )
    assert o.fingerprint == hash(repr(full.desired))
    assert Outcome.of(full, False, "x", 1, 2, fingerprint=7).fingerprint == 7
    assert Outcome.of(d, True).decision.preview == ()


def test_conditions_keep_or_move_their_transition_time_each() -> None:
    fresh = invalid_status(1, "m", None, "T")
    assert [c["lastTransitionTime"] for c in fresh["conditions"]] == ["T", "T", "T"]
    before = {"conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "T0"},
        {"type": "Conflict", "status": "Unknown", "lastTransitionTime": "T1"},
        {"type": "Exposed", "status": "Unknown", "lastTransitionTime": "T2"}]}  # fmt: skip
    after = invalid_status(1, "m", before, "T")
    assert [c["lastTransitionTime"] for c in after["conditions"]] == ["T", "T1", "T2"]


def test_counts_in_messages_and_the_first_conflict_named() -> None:
    from tests.unit.test_exposure_parts import EXPOSURE

    two = status_for(AUDIT, [audited("b", "prod")], None, "T", exposures=[EXPOSURE, EXPOSURE])
    assert cond(two, "Exposed")["message"].endswith("via db/x, db/y (and 1 more)")
    errors = [audited("a", "dev", False, error="e1"), audited("b", "prod", False, error="e2")]
    assert cond(status_for(AUDIT, errors, None, "T"), "Ready")["message"] == (
        "namespace a: e1 (and 1 more namespaces)")  # fmt: skip
    waiting = status_for(AUDIT, [audited("a", "dev", False), audited("b", "prod")], None, "T")
    assert [s["ready"] for s in waiting["segments"]] == [0, 1]
    outs = [outcome(n, environment="dev", other="dev") for n in ("n2", "n1")]
    s = status_for(ISO, outs, None, "T")
    assert cond(s, "Conflict") == {
        "type": "Conflict", "status": "True", "reason": "NamespaceClaimedTwice",
        "message": "2 namespaces claimed by more than one EnvironmentIsolation, e.g. n1 by env, "
        "zzz (owner env); they keep only their default-deny",
        "observedGeneration": 3, "lastTransitionTime": "T",
    }  # fmt: skip
