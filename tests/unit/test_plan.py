"""Planning: what counts as a difference, and the order that keeps namespaces closed."""

from __future__ import annotations

from typing import Any

from envisolation.policy.plan import (
    LivePolicy,
    Verb,
    canonical,
    diff,
    live_after,
    phases,
    plan_namespace,
    sole_manager,
)
from envisolation.policy.render import RenderContext, decide
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts

CTX = RenderContext()


def iso(**spec: Any) -> EnvironmentIsolation:
    spec.setdefault("segments", [{"name": "dev"}, {"name": "prod"}])
    return EnvironmentIsolation.from_body({"metadata": {"name": "env"}, "spec": spec})


def ns(name: str, **labels: str) -> NamespaceFacts:
    return NamespaceFacts.from_body({"metadata": {"name": name, "labels": labels}})


def test_server_defaults_are_not_a_difference() -> None:
    mine = {"podSelector": {}, "ingress": [{"ports": [{"port": 80}], "from": []}], "egress": []}
    theirs = {"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}
    assert canonical(mine) == canonical(theirs)
    assert canonical({"ingress": [{}]}) != canonical({"ingress": []})


def test_a_new_namespace_gets_every_allow_before_its_default_deny() -> None:
    d = decide(ns("a", environment="dev"), [iso()], CTX)
    plan = plan_namespace(d, [], {"env"})
    names = [a.name for a in plan.actions]
    assert names[-1] == "envisolation-default-deny"
    assert all(a.verb is Verb.APPLY and a.created for a in plan.actions)


def test_leaving_deletes_allows_first_and_the_deny_last() -> None:
    d = decide(ns("a", environment="dev"), [iso()], CTX)
    live = live_after(plan_namespace(d, [], {"env"}), [])
    leave = plan_namespace(decide(ns("a"), [iso()], CTX), live, {"env"})
    assert [a.verb for a in leave.actions] == [Verb.DELETE] * 3
    assert leave.actions[-1].name == "envisolation-default-deny"


def test_policies_of_an_unknown_isolation_are_left_alone() -> None:
    d = decide(ns("a", environment="dev"), [iso()], CTX)
    live = live_after(plan_namespace(d, [], {"env"}), [])
    # The CR was deleted with Orphan: "env" is no longer known.
    assert plan_namespace(decide(ns("a", environment="dev"), [], CTX), live, set()).empty


def test_a_policy_without_our_labels_in_live_is_never_deleted() -> None:
    theirs = LivePolicy(
        "a", "theirs", "u", "1", (("team", "x"),), {"podSelector": {}, "policyTypes": ["Ingress"]}
    )
    assert diff("a", [], [theirs], {"env"}) == ()


def test_relabelled_namespace_is_updated_in_place_with_no_delete_of_the_deny() -> None:
    i = iso()
    live = live_after(plan_namespace(decide(ns("a", environment="dev"), [i], CTX), [], {"env"}), [])
    move = plan_namespace(decide(ns("a", environment="prod"), [i], CTX), live, {"env"})
    assert all(a.verb is Verb.APPLY and not a.created for a in move.actions)
    assert move.actions[-1].name == "envisolation-default-deny"
    assert plan_namespace(
        decide(ns("a", environment="prod"), [i], CTX), live_after(move, live), {"env"}
    ).empty


def test_audit_plans_nothing_but_counts_what_enforce_would_do() -> None:
    plan = plan_namespace(
        decide(ns("a", environment="dev"), [iso(enforcement="Audit")], CTX), [], {"env"}
    )
    assert plan.empty
    assert plan.would_apply == 3


def test_phases_keep_allows_before_the_deny_and_its_delete_last() -> None:
    i = iso(allow=[{"name": "a", "ingress": [{}]}, {"name": "b", "ingress": [{}]}])
    plan = plan_namespace(decide(ns("x", environment="dev"), [i], CTX), [], {"env"})
    got = [[a.name for a in p] for p in phases(plan.actions)]
    assert got[-1] == ["envisolation-default-deny"]
    assert "envisolation-default-deny" not in got[0]
    live = live_after(plan, [])
    leave = plan_namespace(decide(ns("x"), [i], CTX), live, {"env"})
    got = [[a.name for a in p] for p in phases(leave.actions)]
    assert got == [
        sorted(n for n in (p.name for p in live) if n != "envisolation-default-deny"),
        ["envisolation-default-deny"],
    ]


def _meta(*managers: str) -> dict[str, object]:
    return {"managedFields": [{"manager": m, "operation": "Apply"} for m in managers]}


def test_only_an_object_whose_every_field_is_ours_skips_the_comparison_after_apply() -> None:
    assert sole_manager(_meta("envisolation"))
    assert sole_manager(_meta("envisolation", "envisolation"))  # Apply and Update entries
    assert not sole_manager(_meta("envisolation", "kubectl-edit"))  # a rule added by hand
    assert not sole_manager(_meta("envisolation", "before-first-apply"))  # unowned fields
    assert not sole_manager(_meta())
    assert not sole_manager({})


def test_live_policy_keeps_what_planning_needs() -> None:
    body = {
        "metadata": {"namespace": "a", "name": "p", "uid": "u1", "resourceVersion": 42,
                     "labels": {"z": "1", "envisolation.io/isolation": "env"}},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }  # fmt: skip
    live = LivePolicy.from_body(body)
    assert live == LivePolicy(
        "a", "p", "u1", "42", (("envisolation.io/isolation", "env"), ("z", "1")), body["spec"]
    )
    assert live.isolation == "env"
    empty = LivePolicy.from_body({})
    assert empty == LivePolicy("", "", "", "", (), {})
    assert empty.isolation is None
    again = LivePolicy.from_body({**body, "spec": {"policyTypes": ["Ingress"], "podSelector": {}}})
    assert again.spec is live.spec  # equal specs share one object


def test_live_after_applies_labels_uids_and_deletes() -> None:
    d = decide(ns("a", environment="dev"), [iso()], CTX)
    first = live_after(plan_namespace(d, [], {"env"}), [])
    assert [p.name for p in first] == sorted(p.name for p in first)
    deny = next(p for p in first if p.name == "envisolation-default-deny")
    assert (deny.namespace, deny.uid, deny.resource_version) == (
        "a", "uid-a-envisolation-default-deny", "")  # fmt: skip
    assert dict(deny.labels)["envisolation.io/isolation"] == "env"
    assert deny.spec == canonical(
        next(p for p in d.desired if p["metadata"]["name"] == deny.name)["spec"]
    )
    # A live policy with an extra label and a uid keeps both through an update.
    kept = [LivePolicy(p.namespace, p.name, f"live-{p.name}", "7", (*p.labels, ("team", "x")), {})
            for p in first]  # fmt: skip
    after = live_after(plan_namespace(d, kept, {"env"}), kept)
    by_name = {p.name: p for p in after}
    assert by_name["envisolation-default-deny"].uid == "live-envisolation-default-deny"
    assert ("team", "x") in by_name["envisolation-default-deny"].labels
    assert by_name["envisolation-default-deny"].spec == deny.spec
    gone = live_after(plan_namespace(decide(ns("a"), [iso()], CTX), first, {"env"}), first)
    assert gone == []


def test_impersonation_is_the_label_without_our_field_manager() -> None:
    from envisolation.policy.plan import impersonates

    label = {"app.kubernetes.io/managed-by": "envisolation"}
    ours = [{"manager": "envisolation", "operation": "Apply"}]
    theirs = [{"manager": "kubectl", "operation": "Update"}]
    assert impersonates({"labels": label, "managedFields": theirs})
    assert not impersonates({"labels": label, "managedFields": ours})
    assert impersonates({"labels": label})  # strict: no managedFields, not ours
    assert not impersonates({"labels": {"app.kubernetes.io/managed-by": "helm"}})
    assert not impersonates({"managedFields": theirs})


def test_a_port_range_gets_the_default_protocol_too() -> None:
    assert canonical({"endPort": 90}) == {"endPort": 90, "protocol": "TCP"}
    assert canonical({"port": 80, "protocol": "UDP"}) == {"port": 80, "protocol": "UDP"}
    assert canonical({"from": None, "ports": [{}]}) == {"ports": [{}]}


def test_a_live_spec_is_canonicalised_once_and_the_cache_is_bounded() -> None:
    from envisolation.policy import plan

    spec: Any = {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}
    first = plan._canonical_live(spec)
    assert first == canonical(spec)
    assert plan._canonical_live(spec) is first  # the same object: not computed again
    other: Any = {"podSelector": {}, "ingress": [{"ports": [{"port": 81}]}]}
    assert plan._canonical_live(other) == canonical(other)
    assert plan._canonical_live(spec) is first
    plan._CANONICAL.clear()
    kept = [{"n": i} for i in range(8193)]  # alive, so no id is reused
    for s in kept:
        plan._canonical_live(s)  # type: ignore[arg-type]
    assert len(plan._CANONICAL) == 8193  # up to 8,192 entries, then one more
    plan._canonical_live(spec)
    assert len(plan._CANONICAL) == 1  # more than 8,192: cleared before adding


def test_plans_name_their_namespace_and_deletes_carry_preconditions() -> None:
    from envisolation.policy.plan import Action, NamespacePlan

    d = decide(ns("a", environment="dev"), [iso()], CTX)
    plan = plan_namespace(d, [], {"env"})
    assert plan.namespace == "a" and {a.namespace for a in plan.actions} == {"a"}
    live = [LivePolicy(p.namespace, p.name, f"uid-{p.name}", f"rv-{p.name}", p.labels, p.spec)
            for p in live_after(plan, [])]  # fmt: skip
    leave = plan_namespace(decide(ns("a"), [iso()], CTX), live, {"env"})
    assert leave.namespace == "a"
    assert leave.actions[-1] == Action(
        Verb.DELETE, "a", "envisolation-default-deny",
        uid="uid-envisolation-default-deny", resource_version="rv-envisolation-default-deny",
    )  # fmt: skip
    assert all(a.uid == f"uid-{a.name}" and a.resource_version == f"rv-{a.name}"
               for a in leave.actions)  # fmt: skip
    # Audit: nothing written; what Enforce would write and delete is counted.
    audit = iso(segments=[{"name": "dev", "enforcement": "Audit"}, {"name": "prod"}])
    stale = [*live, LivePolicy("a", "envisolation-allow-old", "u", "r",
                               (("envisolation.io/isolation", "env"),), {})]  # fmt: skip
    preview = plan_namespace(decide(ns("a", environment="dev"), [audit], CTX), stale[1:], {"env"})
    assert preview == NamespacePlan("a", (), would_apply=1, would_delete=1)
    gone = NamespaceFacts.from_body({"metadata": {"name": "a", "deletionTimestamp": "T"}})
    assert plan_namespace(decide(gone, [iso()], CTX), live, {"env"}) == NamespacePlan("a")
    off = iso(segments=[{"name": "dev", "enforcement": "Off"}, {"name": "prod"}])
    assert plan_namespace(
        decide(ns("a", environment="dev"), [off], CTX), [], {"env"}
    ) == NamespacePlan("a")
