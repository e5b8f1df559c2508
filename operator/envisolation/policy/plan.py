"""Desired vs live -> the ordered writes and deletes for one namespace.

Order is what keeps a namespace closed through every change: allows are applied before
the default-deny (so a namespace new to isolation is never cut off from what the spec
allows, and never open either: until the deny exists, the allows are its only policies
and they do not isolate more than it asked), then stale allows are deleted, the deny last.
Only fields the operator owns are compared, so server defaults never cause a write.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from envisolation.policy.render import Decision
from envisolation.spec import constants as c
from envisolation.spec.kinds import PolicyDict, PolicySpecDict


def owned(meta: Mapping[str, Any], strict: bool = True) -> bool:
    """Is this NetworkPolicy the operator's own?

    The managed-by label alone can be copied by anyone who may write policies, so a live
    object is ours only if our field manager also holds fields of it (the API server
    records that; a tenant cannot fake it without using our manager name). `strict=False`
    accepts the label alone when the object carries no managedFields at all, as files
    exported with `kubectl get -o yaml` do (offline verify).
    """
    if (meta.get("labels") or {}).get(c.LABEL_MANAGED_BY) != c.MANAGED_BY:
        return False
    fields = meta.get("managedFields")
    if not fields:
        return not strict
    return any(isinstance(f, Mapping) and f.get("manager") == c.FIELD_MANAGER for f in fields)


def sole_manager(meta: Mapping[str, Any]) -> bool:
    """Only our field manager holds fields of this object (so nothing beyond what we
    applied is in it: server-side apply removes what we stopped applying, and fields a
    write left unowned are recorded under a manager of their own, before-first-apply)."""
    fields = meta.get("managedFields") or ()
    return bool(fields) and all(
        isinstance(f, Mapping) and f.get("manager") == c.FIELD_MANAGER for f in fields
    )


def impersonates(meta: Mapping[str, Any]) -> bool:
    """Carries the operator's managed-by label but was not written by the operator."""
    labels = meta.get("labels") or {}
    return labels.get(c.LABEL_MANAGED_BY) == c.MANAGED_BY and not owned(meta)


@dataclass(frozen=True)
class LivePolicy:
    """A managed NetworkPolicy as the API server holds it (only what planning needs)."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    labels: tuple[tuple[str, str], ...]
    spec: PolicySpecDict

    @property
    def isolation(self) -> str | None:
        return dict(self.labels).get(c.LABEL_ISOLATION)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> LivePolicy:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            spec=_shared_spec(json.dumps(body.get("spec") or {}, sort_keys=True)),
        )


@functools.lru_cache(maxsize=8192)
def _shared_spec(text: str) -> PolicySpecDict:
    """One object for every equal spec: thousands of namespaces share a handful of specs.

    Callers must treat the result as read-only (planning only compares it).
    """
    return cast(PolicySpecDict, json.loads(text))


class Verb(StrEnum):
    APPLY = "apply"
    DELETE = "delete"


@dataclass(frozen=True)
class Action:
    verb: Verb
    namespace: str
    name: str
    policy: PolicyDict | None = None  # for APPLY
    uid: str = ""  # for DELETE: preconditions, so a re-created object is never deleted
    resource_version: str = ""
    created: bool = False  # APPLY of an object that does not exist yet

    def __str__(self) -> str:
        what = "create" if self.created else self.verb.value
        return f"{what} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class NamespacePlan:
    namespace: str
    actions: tuple[Action, ...] = ()
    would_apply: int = 0  # Audit: what Enforce would write
    would_delete: int = 0

    @property
    def empty(self) -> bool:
        return not self.actions


def canonical(value: Any) -> Any:
    """Drop what the API server drops (empty lists/maps, nulls) and default port protocols."""
    if isinstance(value, Mapping):
        out = {k: canonical(v) for k, v in value.items()}
        out = {k: v for k, v in out.items() if v not in (None, [], {})}
        if ("port" in out or "endPort" in out) and "protocol" not in out:
            out["protocol"] = "TCP"
        return out
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


_CANONICAL: dict[int, tuple[PolicySpecDict, Any]] = {}


def _canonical_live(spec: PolicySpecDict) -> Any:
    """canonical() of a live spec, once per shared spec object (see _shared_spec)."""
    hit = _CANONICAL.get(id(spec))
    if hit is None or hit[0] is not spec:
        if len(_CANONICAL) > 8192:
            _CANONICAL.clear()
        hit = (spec, canonical(spec))
        _CANONICAL[id(spec)] = hit
    return hit[1]


def up_to_date(desired: PolicyDict, live: LivePolicy) -> bool:
    labels = dict(live.labels)
    if any(labels.get(k) != v for k, v in desired["metadata"]["labels"].items()):
        return False
    return bool(canonical(desired["spec"]) == _canonical_live(live.spec))


def diff(
    namespace: str,
    desired: Iterable[PolicyDict],
    live: Iterable[LivePolicy],
    known: Collection[str],
) -> tuple[Action, ...]:
    """Applies for what is missing or differs, deletes for managed policies not desired.

    Live policies labelled with an isolation outside `known` (deleted with Orphan, or whose
    spec is invalid right now) are left alone unless a desired policy takes their name.
    """
    by_name = {p.name: p for p in live}
    wanted = {p["metadata"]["name"]: p for p in desired}
    applies = [
        Action(Verb.APPLY, namespace, name, policy=p, created=name not in by_name)
        for name, p in sorted(wanted.items())
        if name not in by_name or not up_to_date(p, by_name[name])
    ]
    deletes = [
        Action(Verb.DELETE, namespace, p.name, uid=p.uid, resource_version=p.resource_version)
        for name, p in sorted(by_name.items())
        if name not in wanted and p.isolation in known
    ]

    def deny_last(a: Action) -> bool:
        return a.name == c.POLICY_DEFAULT_DENY

    return (
        tuple(a for a in applies if not deny_last(a))
        + tuple(a for a in applies if deny_last(a))
        + tuple(a for a in deletes if not deny_last(a))
        + tuple(a for a in deletes if deny_last(a))
    )


def plan_namespace(
    decision: Decision, live: Iterable[LivePolicy], known: Collection[str]
) -> NamespacePlan:
    live = list(live)
    if decision.hands_off:
        if not decision.preview:
            return NamespacePlan(decision.namespace)
        preview = diff(decision.namespace, decision.preview, live, known)
        return NamespacePlan(
            decision.namespace,
            would_apply=sum(a.verb is Verb.APPLY for a in preview),
            would_delete=sum(a.verb is Verb.DELETE for a in preview),
        )
    return NamespacePlan(
        decision.namespace, diff(decision.namespace, decision.desired, live, known)
    )


def phases(actions: tuple[Action, ...]) -> list[list[Action]]:
    """Split an ordered plan into phases: allows, the deny, stale allows, the deny's delete."""
    out: list[list[Action]] = []
    for a in actions:
        key = (a.verb, a.name == c.POLICY_DEFAULT_DENY)
        if out and (out[-1][0].verb, out[-1][0].name == c.POLICY_DEFAULT_DENY) == key:
            out[-1].append(a)
        else:
            out.append([a])
    return out


def live_after(plan: NamespacePlan, live: Iterable[LivePolicy]) -> list[LivePolicy]:
    """The live set once `plan` has been carried out (as the API would report it)."""
    by_name = {p.name: p for p in live}
    for a in plan.actions:
        if a.verb is Verb.DELETE:
            by_name.pop(a.name, None)
        elif a.policy is not None:
            meta = a.policy["metadata"]
            old = by_name.get(a.name)
            labels = dict(old.labels) if old else {}
            labels.update(meta["labels"])
            by_name[a.name] = LivePolicy(
                a.namespace,
                a.name,
                old.uid if old else f"uid-{a.namespace}-{a.name}",
                "",
                tuple(sorted(labels.items())),
                cast(PolicySpecDict, canonical(a.policy["spec"])),
            )
    return sorted(by_name.values(), key=lambda p: p.name)
