"""decide() and claims_for(): the whole Decision for every state, and which isolations
claim a namespace when older ones are deleting, exclude it or do not select it."""

from __future__ import annotations

from typing import Any

from envisolation.policy.render import (
    Decision,
    NamespaceState,
    RenderContext,
    claims_for,
    decide,
    default_deny,
)
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts

CTX = RenderContext()


def iso(name: str, created: str, key: str = "environment", **spec: Any) -> EnvironmentIsolation:
    spec.setdefault("segments", [{"name": "dev"}])
    spec["namespaceLabel"] = key
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if spec.pop("deleting", False):
        meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return EnvironmentIsolation.from_body({"metadata": meta, "spec": spec})


def ns(name: str, terminating: bool = False, **labels: str) -> NamespaceFacts:
    body: dict[str, Any] = {"metadata": {"name": name, "labels": labels}}
    if terminating:
        body["status"] = {"phase": "Terminating"}
    return NamespaceFacts.from_body(body)


def test_terminating_excluded_and_unmanaged() -> None:
    a = iso("a", "2026-01-01T00:00:00Z", excludeNamespaces=["skip"])
    assert decide(ns("x", True, environment="dev"), [a], CTX) == Decision(
        "x", NamespaceState.TERMINATING, hands_off=True
    )
    assert decide(ns("skip", environment="dev"), [a], CTX) == Decision(
        "skip", NamespaceState.EXCLUDED, None, "dev", ("a",)
    )
    assert decide(ns("kube-system", environment="dev"), [a], CTX) == Decision(
        "kube-system", NamespaceState.EXCLUDED, None, "dev", ("a",)
    )
    assert decide(ns("skip", environment="qa"), [a], CTX) == Decision(
        "skip", NamespaceState.UNMANAGED
    )
    assert decide(ns("y"), [a], CTX) == Decision("y", NamespaceState.UNMANAGED)


def test_a_namespace_claimed_twice_keeps_only_its_default_deny_in_every_mode() -> None:
    for mode, hands_off in (("Enforce", False), ("Audit", True), ("Off", False)):
        old = iso("old", "2026-01-01T00:00:00Z", segments=[{"name": "dev", "enforcement": mode}])
        new = iso("new", "2026-02-01T00:00:00Z", key="tier")
        d = decide(ns("x", environment="dev", tier="dev"), [new, old], CTX)
        deny = (default_deny(old, old.segments[0], "x"),)
        assert d == Decision(
            "x", NamespaceState.CONFLICT, "old", "dev", ("old", "new"),
            desired=deny if mode == "Enforce" else (),
            preview=deny if mode == "Audit" else (),
            hands_off=hands_off,
        ), mode  # fmt: skip


def test_claims_skip_older_isolations_that_do_not_claim() -> None:
    deleting = iso("a-deleting", "2026-01-01T00:00:00Z", deleting=True)
    excluding = iso("b-excluding", "2026-01-02T00:00:00Z", excludeNamespaces=["x"])
    unlabelled = iso("c-other-key", "2026-01-03T00:00:00Z", key="tier")
    unselected = iso("d-selector", "2026-01-04T00:00:00Z",
                     segments=[{"name": "dev", "namespaceSelector": {"matchLabels": {"team": "t"}}}])  # fmt: skip
    claiming = iso("e-claims", "2026-01-05T00:00:00Z")
    everyone = [claiming, unselected, unlabelled, excluding, deleting]
    got = claims_for(ns("x", environment="dev"), everyone, CTX)
    assert [c.isolation.name for c in got] == ["e-claims"]
    assert got[0].segment.name == "dev"
    both = claims_for(ns("x", environment="dev", team="t"), everyone, CTX)
    assert [c.isolation.name for c in both] == ["d-selector", "e-claims"]
