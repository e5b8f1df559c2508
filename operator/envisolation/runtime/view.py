"""The operator's in-memory view of Namespaces and NetworkPolicies (no I/O, no Kopf).

Filled by one LIST at start-up (and after a 410 Gone, and at every resync, which also
drops what a missed DELETED event left behind) and kept current by the controller's own
watches, which resume from `resource_versions`. Kopf's indexes and watches would do the
same at a far higher cost per object: at start-up Kopf makes every indexed object wait
for every other one, and it keeps a memory and a worker per object it has seen;
namespaces and policies are the many objects, so they live here. Newer resourceVersions
always win.

Foreign policies (ones the operator did not write) matter only for exposure analysis,
which looks only at namespaces an EnvironmentIsolation manages: with a `scope`, the view
keeps them only for namespaces the scope admits (and for namespaces not seen yet). A
namespace that comes into scope later is listed in `unfetched`, for the controller to
read its policies with a LIST of that namespace. A cluster holds many more namespaces and
policies than the segments do; most of them need not be held at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

from envisolation.analysis.exposure import SeenPolicy
from envisolation.policy.plan import LivePolicy, impersonates, owned
from envisolation.spec.model import InvalidSpec, NamespaceFacts


def _rv(meta: Mapping[str, Any]) -> int:
    try:
        return int(meta.get("resourceVersion") or 0)
    except ValueError:
        return 0


Scope = Callable[[NamespaceFacts], bool]


class ClusterView:
    def __init__(self, scope: Scope | None = None) -> None:
        self.scope = scope  # None: keep every foreign policy
        # namespaces that came into scope since their policies were read
        self.unfetched: set[str] = set()
        self.namespaces: dict[str, NamespaceFacts] = {}
        self.managed: dict[str, dict[str, LivePolicy]] = {}  # namespace -> name -> policy
        self.foreign: dict[str, dict[str, SeenPolicy]] = {}
        self._rv: dict[tuple[str, str], int] = {}  # ("", ns) or (ns, policy) -> rv
        self._gone: dict[tuple[str, str], int] = {}  # deletions seen, until the next load
        # foreign policies that carry our managed-by label: (namespace, name) -> uid
        self.impersonating: dict[tuple[str, str], str] = {}
        self.loaded = False
        # False after a listing of only our own policies (start-up): foreign ones are read
        # by the full listing that follows the first pass; exposure analysis waits for it
        self.foreign_listed = True
        # where each watch resumes: the listing's resourceVersion, then each event's
        self.resource_versions: dict[str, str] = {}

    # -- scope -------------------------------------------------------------------------------

    def keeps(self, ns: str) -> bool:
        """Are foreign policies of `ns` kept? In scope, or not seen yet (decided later)."""
        if self.scope is None:
            return True
        facts = self.namespaces.get(ns)
        return facts is None or self.scope(facts)

    def set_scope(self, scope: Scope | None) -> None:
        before = {ns for ns in self.namespaces if self.keeps(ns)}
        self.scope = scope
        for ns in self.namespaces:
            now = self.keeps(ns)
            if ns in before and not now:
                self._forget_foreign(ns)
            elif now and ns not in before:
                self.unfetched.add(ns)

    def _forget_foreign(self, ns: str) -> None:
        self.unfetched.discard(ns)
        for name in self.foreign.pop(ns, {}):
            self._rv.pop((ns, name), None)
            self.impersonating.pop((ns, name), None)

    # -- events ------------------------------------------------------------------------------

    def namespace_event(self, kind: str | None, body: Mapping[str, Any]) -> str:
        meta = body.get("metadata") or {}
        name = str(meta.get("name", ""))
        key, rv = ("", name), _rv(meta)
        if kind == "DELETED":
            self.namespaces.pop(name, None)
            self._rv.pop(key, None)
            self._gone[key] = rv
            self.unfetched.discard(name)  # its policies' own DELETED events follow
        elif rv >= self._rv.get(key, 0) and rv > self._gone.get(key, -1):
            seen = name in self.namespaces
            kept = self.keeps(name)
            self.namespaces[name] = NamespaceFacts.from_body(body)
            self._rv[key] = rv
            if kept and not self.keeps(name):
                self._forget_foreign(name)
            elif seen and not kept and self.keeps(name):
                self.unfetched.add(name)
        return name

    def policy_event(self, kind: str | None, body: Mapping[str, Any]) -> tuple[str, bool]:
        """Apply one event; returns (namespace, whether a foreign policy was involved).

        Only a policy our field manager wrote is managed (plan.owned); one that merely
        carries our label is foreign: analysed for exposures, reported, never written.
        """
        meta = body.get("metadata") or {}
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        key, rv = (ns, name), _rv(meta)
        was_foreign = name in self.foreign.get(ns, {})
        if kind == "DELETED":
            self._drop(ns, name)
            self._rv.pop(key, None)
            self._gone[key] = rv
            return ns, was_foreign
        if rv < self._rv.get(key, 0) or rv <= self._gone.get(key, -1):
            return ns, False  # older than what we hold, or deleted since
        self._rv[key] = rv
        self._drop(ns, name)
        if owned(meta):
            self.managed.setdefault(ns, {})[name] = LivePolicy.from_body(body)
            return ns, was_foreign
        if not self.keeps(ns):
            self._rv.pop(key, None)  # out of scope: not held (see the module's docstring)
            return ns, was_foreign
        if impersonates(meta):
            self.impersonating[key] = str(meta.get("uid", ""))
        # The API server accepted it; if we cannot read it, we cannot analyse it.
        with contextlib.suppress(InvalidSpec):
            self.foreign.setdefault(ns, {})[name] = SeenPolicy.from_body(body)
        return ns, True

    def _drop(self, ns: str, name: str) -> None:
        self.impersonating.pop((ns, name), None)
        for store in (self.managed, self.foreign):
            inner = store.get(ns)
            if inner is not None:
                inner.pop(name, None)
                if not inner:
                    del store[ns]

    # -- listings ----------------------------------------------------------------------------

    def adopt(
        self,
        fresh: ClusterView,
        namespaces_rv: str,
        policies_rv: str,
        unfetched_at_start: Collection[str] = (),
    ) -> None:
        """Take the view a LIST built, keeping what events brought meanwhile that is newer.

        The listing was read page by page while the watches went on; an object an event
        brought after the listing's resourceVersion wins over the listing, and a deletion
        an event brought keeps the listing from resurrecting the object.
        """
        for key, gone_rv in self._gone.items():
            if key in fresh._rv and fresh._rv[key] <= gone_rv:
                if key[0] == "":
                    fresh.namespaces.pop(key[1], None)
                else:
                    fresh._drop(*key)
                del fresh._rv[key]
        listed = {
            "": _rv({"resourceVersion": namespaces_rv}),
            "*": _rv({"resourceVersion": policies_rv}),
        }
        moved: set[str] = set()  # namespaces whose newer labels come from events
        for key, rv in self._rv.items():
            horizon = listed[""] if key[0] == "" else listed["*"]
            if rv <= horizon or rv <= fresh._rv.get(key, 0):
                continue  # the listing is as new or newer: it decides
            fresh._rv[key] = rv
            if key[0] == "":
                if key[1] in self.namespaces:
                    fresh.namespaces[key[1]] = self.namespaces[key[1]]
                    moved.add(key[1])
            else:
                ns, name = key
                fresh._drop(ns, name)
                if name in self.managed.get(ns, {}):
                    fresh.managed.setdefault(ns, {})[name] = self.managed[ns][name]
                elif name in self.foreign.get(ns, {}) and fresh.keeps(ns):
                    fresh.foreign.setdefault(ns, {})[name] = self.foreign[ns][name]
                    if key in self.impersonating:
                        fresh.impersonating[key] = self.impersonating[key]
        # A namespace that came into scope after the listing read it: its policies were
        # filtered by the older labels. One that was waiting when the listing started
        # (`unfetched_at_start`) has been read by it, unless its labels moved meanwhile;
        # kept waiting, the controller would list the cluster again on every turn.
        for ns in (self.unfetched - set(unfetched_at_start)) | moved:
            if fresh.keeps(ns) and ns in fresh.namespaces:
                fresh.unfetched.add(ns)
        self.namespaces, self.managed, self.foreign = fresh.namespaces, fresh.managed, fresh.foreign
        self._rv, self.impersonating = fresh._rv, fresh.impersonating
        self.unfetched, self.scope = fresh.unfetched, fresh.scope
        self._gone = {}
        self.resource_versions = {"namespaces": namespaces_rv, "networkpolicies": policies_rv}
        self.loaded = True
