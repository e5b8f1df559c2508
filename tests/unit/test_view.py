"""The in-memory view: newer resourceVersions win, deletions are not resurrected."""

from __future__ import annotations

from typing import Any

from envisolation.runtime.view import ClusterView

MANAGED = {"app.kubernetes.io/managed-by": "envisolation", "envisolation.io/isolation": "env"}


def ns(name: str, rv: int, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(rv), "labels": labels}}


def pol(
    name: str,
    rv: int,
    labels: dict[str, str] | None = None,
    namespace: str = "a",
    manager: str = "envisolation",
) -> dict[str, Any]:
    fields = [{"manager": manager, "operation": "Apply", "fieldsType": "FieldsV1"}]
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": str(rv),
                         "uid": f"uid-{name}", "labels": labels or {}, "managedFields": fields},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}  # fmt: skip


def load(
    v: ClusterView, namespaces: list[Any], namespaces_rv: str, policies: list[Any], policies_rv: str
) -> None:
    """What the controller does with the pages of a LIST: a fresh view, then adopt."""
    waiting = set(v.unfetched)
    fresh = ClusterView(v.scope)
    for body in namespaces:
        fresh.namespace_event("ADDED", body)
    for body in policies:
        fresh.policy_event("ADDED", body)
    v.adopt(fresh, namespaces_rv, policies_rv, waiting)


def test_events_keep_the_newest_state() -> None:
    v = ClusterView()
    v.namespace_event("ADDED", ns("a", 5, environment="dev"))
    v.namespace_event("MODIFIED", ns("a", 3, environment="prod"))  # older: ignored
    assert v.namespaces["a"].label_map["environment"] == "dev"
    v.namespace_event("MODIFIED", ns("a", 7, environment="prod"))
    assert v.namespaces["a"].label_map["environment"] == "prod"


def test_policies_move_between_managed_and_foreign_with_their_label() -> None:
    v = ClusterView()
    assert v.policy_event("ADDED", pol("p", 1, MANAGED)) == ("a", False)
    assert "p" in v.managed["a"]
    assert v.policy_event("MODIFIED", pol("p", 2, {})) == ("a", True)
    assert "p" in v.foreign["a"]
    assert "a" not in v.managed
    v.policy_event("DELETED", pol("p", 3))
    assert not v.foreign and not v.managed


def test_a_listing_does_not_resurrect_what_events_deleted_or_override_newer_events() -> None:
    v = ClusterView()
    v.policy_event("DELETED", pol("gone", 12, MANAGED))
    v.policy_event("ADDED", pol("new", 15, MANAGED))
    v.namespace_event("MODIFIED", ns("a", 14, environment="prod"))
    # The LIST was served at revision 10: it still has "gone", lacks "new", has an older "a".
    load(
        v,
        [ns("a", 9, environment="dev"), ns("b", 8)],
        "10",
        [pol("gone", 6, MANAGED), pol("kept", 7, MANAGED)],
        "10",
    )
    assert set(v.managed["a"]) == {"new", "kept"}
    assert v.namespaces["a"].label_map["environment"] == "prod"
    assert set(v.namespaces) == {"a", "b"}


def test_a_listing_drops_what_a_missed_deleted_event_left_behind() -> None:
    v = ClusterView()
    load(v, [ns("a", 1)], "5", [pol("old", 2, MANAGED)], "5")
    load(v, [ns("a", 1)], "20", [], "20")  # "old" vanished while we were not watching
    assert "a" not in v.managed
    assert v.loaded


def test_only_our_field_manager_makes_a_policy_managed() -> None:
    """A tenant can copy the managed-by label, not the API server's record of who wrote it."""
    v = ClusterView()
    assert v.policy_event("ADDED", pol("spoof", 1, MANAGED, manager="kubectl")) == ("a", True)
    assert "a" not in v.managed
    assert "spoof" in v.foreign["a"]
    assert v.impersonating == {("a", "spoof"): "uid-spoof"}
    bare = pol("bare", 2, MANAGED)
    del bare["metadata"]["managedFields"]  # stripped fields prove nothing either
    v.policy_event("ADDED", bare)
    assert set(v.foreign["a"]) == {"spoof", "bare"}
    v.policy_event("DELETED", pol("spoof", 3, MANAGED, manager="kubectl"))
    assert ("a", "spoof") not in v.impersonating
    # our own apply takes the name over: from then on it is managed
    v.policy_event("MODIFIED", pol("bare", 4, MANAGED))
    assert "bare" in v.managed["a"] and not v.impersonating


def in_dev(facts: Any) -> bool:
    return ("environment", "dev") in facts.labels


def test_a_scope_keeps_foreign_policies_only_where_a_segment_label_is() -> None:
    v = ClusterView(in_dev)
    load(v,
        [ns("a", 1, environment="dev"), ns("b", 2)],
        "10",
        [pol("mine", 3, MANAGED, "b"), pol("theirs", 4, {}, "b", "kubectl"),
         pol("theirs", 5, {}, "a", "kubectl")],
        "10",
    )  # fmt: skip
    assert set(v.foreign) == {"a"}  # b is out of scope: its foreign policy is not held
    assert "mine" in v.managed["b"]  # ours are always held: they may have to be deleted
    assert not v.unfetched


def test_a_namespace_labelled_into_scope_is_fetched_and_out_of_scope_forgotten() -> None:
    v = ClusterView(in_dev)
    v.namespace_event("ADDED", ns("b", 1))
    v.policy_event("ADDED", pol("theirs", 2, {}, "b", "kubectl"))
    assert not v.foreign
    v.namespace_event("MODIFIED", ns("b", 3, environment="dev"))
    assert v.unfetched == {"b"}
    v.policy_event("ADDED", pol("theirs", 2, {}, "b", "kubectl"))  # what the fetch reads
    assert "theirs" in v.foreign["b"]
    v.namespace_event("MODIFIED", ns("b", 4, environment="prod"))
    assert not v.foreign and not v.unfetched


def test_policies_seen_before_their_namespace_wait_for_its_labels() -> None:
    v = ClusterView(in_dev)
    v.policy_event("ADDED", pol("early", 1, {}, "c", "kubectl"))
    v.policy_event("ADDED", pol("early", 1, {}, "d", "kubectl"))
    v.namespace_event("ADDED", ns("c", 2, environment="dev"))
    v.namespace_event("ADDED", ns("d", 3))
    assert set(v.foreign) == {"c"}
    assert not v.unfetched  # nothing was dropped for c: no LIST needed


def test_a_wider_scope_asks_for_the_namespaces_it_adds() -> None:
    v = ClusterView(in_dev)
    load(v, [ns("a", 1, environment="dev"), ns("b", 2, environment="prod")], "5", [], "5")
    v.set_scope(lambda f: dict(f.labels).get("environment") in ("dev", "prod"))
    assert v.unfetched == {"b"}
    v.set_scope(in_dev)
    assert not v.unfetched


def test_a_listing_keeps_the_namespaces_that_came_into_scope_meanwhile_unfetched() -> None:
    v = ClusterView(in_dev)
    load(v, [ns("b", 1)], "5", [], "5")
    v.namespace_event("MODIFIED", ns("b", 8, environment="dev"))  # during the next LIST
    load(v, [ns("b", 1)], "6", [pol("theirs", 2, {}, "b", "kubectl")], "6")
    assert v.namespaces["b"].label_map["environment"] == "dev"
    assert v.unfetched == {"b"}


def test_a_listing_reads_the_namespaces_that_waited_for_it() -> None:
    """More than FETCH_EACH_MAX namespaces came into scope: one cluster-wide LIST reads
    them all, and none is left waiting (else the controller listed again every turn)."""
    v = ClusterView(in_dev)
    load(v, [ns("a", 1, environment="dev"), ns("b", 2, environment="prod")], "5", [], "5")
    v.set_scope(lambda f: dict(f.labels).get("environment") in ("dev", "prod"))
    assert v.unfetched == {"b"}
    load(v, [ns("a", 1, environment="dev"), ns("b", 2, environment="prod")], "7",
         [pol("theirs", 6, {}, "b", "kubectl")], "7")  # fmt: skip
    assert "theirs" in v.foreign["b"]
    assert not v.unfetched
