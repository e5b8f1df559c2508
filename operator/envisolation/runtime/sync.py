"""Keeps the cluster view current: one paged LIST, then watches; scope and its reads.

Namespaces and NetworkPolicies are listed once (and after a 410 Gone, and at each
resync) and then watched from the listing's resourceVersion. Every event is applied to
the view (view.py) and the namespace it concerns is handed to `Touch`, so the
controller plans that namespace alone. Foreign policies are held only where an
isolation's label names a segment; a namespace that comes into scope later has its
policies read before exposure analysis trusts the view again.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from typing import Any, Protocol

import structlog

from envisolation.runtime.api import WATCHED, ApiError, Gone, Lister, Watcher
from envisolation.runtime.view import ClusterView
from envisolation.spec import constants as c
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts

log = structlog.get_logger("envisolation.sync")
FETCH_EACH_MAX = 100  # more namespaces than this came into scope: one cluster-wide LIST
MAX_RETRY_SECONDS = 30.0
OURS = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"  # the label selector of a start-up listing


class Touch(Protocol):
    """Where the view's changes go (the controller)."""

    def touch(self, namespace: str) -> None: ...
    def touch_all(self) -> None: ...
    def touch_exposure(self) -> None: ...


class ViewSync:
    def __init__(self, lister: Lister, watcher: Watcher, touch: Touch) -> None:
        self.view = ClusterView()
        self._lister = lister
        self._watcher = watcher
        self._touch = touch
        self._scope_key: frozenset[tuple[str, str]] | None = None

    # -- events ------------------------------------------------------------------------------

    def deliver(self, resource: str, kind: str, body: Mapping[str, Any]) -> None:
        """One event of our own watches, on the event loop."""
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.view.resource_versions[resource] = str(rv)
        if kind == "BOOKMARK":
            return
        if resource == "namespaces":
            self._touch.touch(self.view.namespace_event(kind, body))
        else:
            self.policy_event(kind, body)

    def policy_event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        ns, foreign = self.view.policy_event(kind, body)
        self._touch.touch(ns)
        if foreign:
            self._touch.touch_exposure()

    # -- listing and watching ----------------------------------------------------------------

    def start(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._watch(r), name=f"watch-{r}") for r in WATCHED]

    async def _watch(self, resource: str) -> None:
        """Watch from the view's resourceVersion forever; a 410 Gone means a fresh LIST.

        A relist cannot report the deletions that happened while a watch was down, so
        the view is replaced by the listing and every namespace is planned again (which
        writes only what really differs).
        """
        delay = 1.0
        while True:
            try:
                await self._watcher.watch(
                    resource,
                    self.view.resource_versions.get(resource, ""),
                    functools.partial(self.deliver, resource),
                )
                delay = 1.0
            except Gone:
                log.info("a watch relisted; comparing with a fresh listing", resource=resource)
                await self.load()
                self._touch.touch_all()
            except ApiError as e:
                log.warning("watch failed; retrying", resource=resource, error=str(e), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def load(self, ours_only: bool = False) -> None:
        """LIST Namespaces and NetworkPolicies into the view, retrying until it works.

        The listing is read a page at a time into a fresh view, which replaces the
        current one only when complete: a pass never plans against half a listing.
        `ours_only` (start-up): only the policies that carry our managed-by label, which
        is all that planning needs; the first pass then runs without waiting for every
        other policy in the cluster (at 10,000 namespaces, two thirds of a restart's
        listing in the bench), and fetch() lists everything right after it.
        """
        delay = 1.0
        while True:
            try:
                started = time.monotonic()
                waiting = set(self.view.unfetched)  # this listing reads their policies
                fresh = ClusterView(self.view.scope)
                ns_rv = await self._lister.list_each(
                    "namespaces", functools.partial(fresh.namespace_event, "ADDED")
                )
                listed_ns = time.monotonic()
                pol_rv = await self._lister.list_each(
                    "networkpolicies",
                    functools.partial(fresh.policy_event, "ADDED"),
                    label_selector=OURS if ours_only else "",
                )
                self.view.adopt(fresh, ns_rv, pol_rv, waiting)
                self.view.foreign_listed = not ours_only
                log.info(
                    "listed the cluster",
                    namespaces=len(self.view.namespaces),
                    ours_only=ours_only,
                    managed_policies=sum(map(len, self.view.managed.values())),
                    foreign_policies_held=sum(map(len, self.view.foreign.values())),
                    namespaces_s=round(listed_ns - started, 2),
                    policies_s=round(time.monotonic() - listed_ns, 2),
                )
                return
            except ApiError as e:
                log.warning("listing the cluster failed; retrying", error=str(e), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)

    # -- scope -------------------------------------------------------------------------------

    def update_scope(self, valid: list[EnvironmentIsolation]) -> None:
        """Foreign policies are held only where an isolation's label names a segment."""
        key = frozenset((iso.namespace_label, seg.name) for iso in valid for seg in iso.segments)
        if key == self._scope_key:
            return
        self._scope_key = key

        def scope(facts: NamespaceFacts) -> bool:
            return any(pair in key for pair in facts.labels)

        self.view.set_scope(scope)
        if self.view.unfetched:
            self._touch.touch_exposure()

    async def fetch(self) -> None:
        """Read the policies of namespaces that came into scope (for exposure analysis)."""
        if not self.view.foreign_listed:  # start-up listed only ours: now the rest
            await self.load()
            self._touch.touch_exposure()
            return
        pending = self.view.unfetched
        if not pending:
            return
        if len(pending) > FETCH_EACH_MAX:
            await self.load()  # one paged LIST costs less than hundreds of small ones
            self._touch.touch_exposure()
            return
        for ns in sorted(pending):
            try:
                await self._lister.list_each(
                    "networkpolicies", functools.partial(self.policy_event, "ADDED"), ns
                )
            except ApiError as e:
                log.warning("reading a namespace's policies failed", namespace=ns, error=str(e))
                return  # the next turn of the loop tries again
            self.view.unfetched.discard(ns)
        self._touch.touch_exposure()
