"""The reconcile loop: dirty namespaces in, ordered writes out, status coalesced.

Kopf feeds it (handlers.py hands over watch events and the index of EnvironmentIsolations);
it knows nothing of Kopf. Everything it reads comes from memory (store.ClusterView, filled
by one LIST at start-up and at each resync), so a namespace event costs one namespace's
plan, never a relist, and an unchanged world costs no write.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import datetime as dt
import functools
import gc
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from envisolation.policy.conditions import Outcome, invalid_status, status_for
from envisolation.policy.plan import (
    Action,
    LivePolicy,
    NamespacePlan,
    Verb,
    phases,
    plan_namespace,
    sole_manager,
    up_to_date,
)
from envisolation.policy.render import Decision, NamespaceState, RenderContext, decide
from envisolation.runtime.kube import WATCHED, ApiError, Gone, ObjectRef
from envisolation.runtime.metrics import (
    EVENTS_DROPPED,
    NAMESPACES,
    POLICIES_REPAIRED,
    POLICIES_WRITTEN,
    RECONCILE_SECONDS,
)
from envisolation.runtime.monitor import ExposureMonitor
from envisolation.runtime.store import ClusterView
from envisolation.spec import constants as c
from envisolation.spec.kinds import PolicyDict, StatusDict
from envisolation.spec.model import (
    EnvironmentIsolation,
    InvalidSpec,
    IsolationRecord,
    NamespaceFacts,
)

log = structlog.get_logger("envisolation.controller")
EXPOSURE_INTERVAL_SECONDS = 2.0  # exposure analysis runs at most this often
MAX_QUEUED_EVENTS = 10_000  # beyond this, Events are dropped (and counted), never writes
FETCH_EACH_MAX = 100  # more namespaces than this came into scope: one cluster-wide LIST


class KubeApi(Protocol):
    async def list_each(
        self, resource: str, each: Callable[[Mapping[str, Any]], object], namespace: str = ""
    ) -> str: ...
    async def watch(
        self, resource: str, resource_version: str, deliver: Callable[[str, Any], None]
    ) -> None: ...
    async def apply_policy(self, policy: PolicyDict) -> Mapping[str, Any]: ...
    async def replace_policy(
        self, policy: PolicyDict, resource_version: str
    ) -> Mapping[str, Any]: ...
    async def delete_policy(
        self, namespace: str, name: str, uid: str, resource_version: str
    ) -> None: ...
    async def apply_status(self, name: str, status: StatusDict) -> None: ...
    async def post_event(
        self, ref: ObjectRef, reason: str, message: str, warning: bool = False
    ) -> None: ...


@dataclass
class _Written:
    """A write of ours that the watch may not have delivered yet."""

    rv: int
    policy: LivePolicy | None  # None: we deleted the object with this uid
    uid: str
    at: float


def _rv(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return -1


def release_memory() -> None:
    """After a large pass, hand freed heap back to the OS (glibc keeps it otherwise)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only; musl has none
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller:
    def __init__(
        self,
        kube: KubeApi,
        ctx: RenderContext,
        resync_seconds: float = c.DEFAULT_RESYNC_SECONDS,
        concurrency: int = 16,
    ) -> None:
        self.kube = kube
        self.ctx = ctx
        self.resync_seconds = resync_seconds
        self._sem = asyncio.Semaphore(concurrency)
        self.view = ClusterView()
        self._records: Mapping[str, Collection[IsolationRecord]] = {}
        self._bound = asyncio.Event()
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._outcomes: dict[str, Outcome] = {}
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._written: dict[str, dict[str, _Written]] = {}
        self._parsed: dict[tuple[str, int, bool], EnvironmentIsolation | InvalidSpec] = {}
        self._status_due = True
        self._last_status = 0.0
        self._sent: dict[str, tuple[StatusDict, float]] = {}
        # isolation -> (uid, generation) that its last full pass used
        self._synced: dict[str, tuple[str, int]] = {}
        self.monitor = ExposureMonitor()
        self._exposure_due = True
        self._last_exposure = 0.0
        self._last_release = 0.0
        self._impersonators: dict[tuple[str, str], str] = {}  # reported already
        self._events: collections.deque[tuple[ObjectRef, str, str, bool]] = collections.deque()
        self._events_ready = asyncio.Event()
        self._idle = asyncio.Event()  # set while no reconcile pass is running
        self._idle.set()
        self._scope_key: frozenset[tuple[str, str]] | None = None
        self.passes = 0  # completed reconcile passes (for tests and the health probe)

    # -- inputs ------------------------------------------------------------------------------

    def bind(self, records: Mapping[str, Collection[IsolationRecord]]) -> None:
        """Hand over Kopf's index of EnvironmentIsolations (complete once any handler runs)."""
        self._records = records
        self._bound.set()

    def namespace_event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        self.touch(self.view.namespace_event(kind, body))

    def policy_event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        ns, foreign = self.view.policy_event(kind, body)
        self.touch(ns)
        if foreign:
            self.touch_exposure()

    def deliver(self, resource: str, kind: str, body: Mapping[str, Any]) -> None:
        """One event of our own watches (kube.Kube.watch), on the event loop."""
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.view.resource_versions[resource] = str(rv)
        if kind == "BOOKMARK":
            return
        if resource == "namespaces":
            self.namespace_event(kind, body)
        else:
            self.policy_event(kind, body)

    async def _watch(self, resource: str) -> None:
        """Watch from the view's resourceVersion forever; a 410 Gone means a fresh LIST.

        A relist cannot report the deletions that happened while a watch was down, so
        the view is replaced by the listing and every namespace is planned again (which
        writes only what really differs).
        """
        delay = 1.0
        while True:
            try:
                await self.kube.watch(
                    resource,
                    self.view.resource_versions.get(resource, ""),
                    functools.partial(self.deliver, resource),
                )
                delay = 1.0
            except Gone:
                log.info("a watch relisted; comparing with a fresh listing", resource=resource)
                await self.load()
                self.touch_all()
            except ApiError as e:
                log.warning("watch failed; retrying", resource=resource, error=str(e), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def load(self) -> None:
        """LIST Namespaces and NetworkPolicies into the view, retrying until it works.

        The listing is read a page at a time into a fresh view, which replaces the
        current one only when complete: a pass never plans against half a listing.
        """
        delay = 1.0
        while True:
            try:
                fresh = ClusterView(self.view.scope)
                ns_rv = await self.kube.list_each(
                    "namespaces", functools.partial(fresh.namespace_event, "ADDED")
                )
                pol_rv = await self.kube.list_each(
                    "networkpolicies", functools.partial(fresh.policy_event, "ADDED")
                )
                self.view.adopt(fresh, ns_rv, pol_rv)
                return
            except ApiError as e:
                log.warning("listing the cluster failed; retrying", error=str(e), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def emit(self, ref: ObjectRef, reason: str, message: str, warning: bool = False) -> None:
        """Queue an Event. Events go out between reconcile passes, a few at a time, so a
        rollout's thousand namespace Events never compete with its writes (_post_events)."""
        if len(self._events) >= MAX_QUEUED_EVENTS:
            EVENTS_DROPPED.inc()
            return
        self._events.append((ref, reason, message, warning))
        self._events_ready.set()

    async def _post_events(self) -> None:
        while True:
            await self._events_ready.wait()
            self._events_ready.clear()
            while self._events:
                # An Event informs; a policy isolates: a pass in progress goes first.
                await self._idle.wait()
                batch = [self._events.popleft() for _ in range(min(2, len(self._events)))]
                await asyncio.gather(*(self.kube.post_event(*item) for item in batch))

    def touch(self, namespace: str) -> None:
        self._dirty.add(namespace)
        self._wake.set()

    def touch_all(self) -> None:
        self._all_dirty = True
        self._wake.set()

    def touch_exposure(self) -> None:
        """A policy the operator does not own changed: look for exposures again."""
        self._exposure_due = True
        self._wake.set()

    # -- queries -----------------------------------------------------------------------------

    def parse(self, record: IsolationRecord) -> EnvironmentIsolation | InvalidSpec:
        key = record.key
        if key not in self._parsed:
            try:
                self._parsed[key] = record.parse()
            except InvalidSpec as e:
                self._parsed[key] = e
        return self._parsed[key]

    def records(self) -> list[IsolationRecord]:
        return [r for store in self._records.values() for r in store]

    def remaining(self, isolation: str) -> int:
        """Live policies still labelled with `isolation` (for deletionPolicy Delete)."""
        return sum(
            1
            for inner in self.view.managed.values()
            for p in inner.values()
            if p.isolation == isolation
        )

    # -- the loop ----------------------------------------------------------------------------

    def _valid(self) -> list[EnvironmentIsolation]:
        """The isolations whose spec parses (an invalid one fails closed: its policies stay
        as they are)."""
        return [
            iso for rec in self.records() if not isinstance(iso := self.parse(rec), InvalidSpec)
        ]

    def _update_scope(self, valid: list[EnvironmentIsolation]) -> None:
        """Foreign policies are held only where an isolation's label names a segment."""
        key = frozenset((iso.namespace_label, seg.name) for iso in valid for seg in iso.segments)
        if key == self._scope_key:
            return
        self._scope_key = key

        def scope(facts: NamespaceFacts) -> bool:
            return any(pair in key for pair in facts.labels)

        self.view.set_scope(scope)
        if self.view.unfetched:
            self.touch_exposure()

    async def _fetch(self) -> None:
        """Read the policies of namespaces that came into scope (for exposure analysis)."""
        pending = self.view.unfetched
        if not pending:
            return
        if len(pending) > FETCH_EACH_MAX:
            await self.load()  # one paged LIST costs less than hundreds of small ones
            self.touch_exposure()
            return
        for ns in sorted(pending):
            try:
                await self.kube.list_each(
                    "networkpolicies", functools.partial(self.policy_event, "ADDED"), ns
                )
            except ApiError as e:
                log.warning("reading a namespace's policies failed", namespace=ns, error=str(e))
                return  # the next turn of the loop tries again
            self.view.unfetched.discard(ns)
        self.touch_exposure()

    async def run(self) -> None:
        await self._bound.wait()
        self._update_scope(self._valid())
        await self.load()
        watches = [asyncio.create_task(self._watch(r), name=f"watch-{r}") for r in WATCHED]
        watches.append(asyncio.create_task(self._post_events(), name="events"))
        try:
            await self._loop()
        finally:
            for t in watches:
                t.cancel()
            await asyncio.gather(*watches, return_exceptions=True)

    async def _loop(self) -> None:
        next_resync = time.monotonic() + self.resync_seconds
        while True:
            now = time.monotonic()
            if now >= next_resync:
                await self.load()  # also drops what a missed DELETED event left behind
                self._all_dirty = True
                next_resync = now + self.resync_seconds
            due = {ns for ns, t in self._retry_at.items() if t <= now}
            if self._all_dirty:
                self._all_dirty = False
                self._dirty.clear()
                batch = set(self.view.namespaces) | set(self._outcomes)
            else:
                batch, self._dirty = self._dirty | due, set()
            if batch:
                await self._pass(batch, full=batch >= set(self.view.namespaces))
            await self._fetch()
            await self._maybe_analyse()
            await self._maybe_flush_status()
            waits = [next_resync, *self._retry_at.values()]
            if self._status_due:
                waits.append(self._last_status + c.STATUS_MIN_INTERVAL_SECONDS)
            if self._exposure_due:
                waits.append(self._last_exposure + EXPOSURE_INTERVAL_SECONDS)
            timeout = max(0.0, min(waits) - time.monotonic())
            if not self._dirty and not self._all_dirty:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            # Let a burst of events land in one batch.
            await asyncio.sleep(0.05)

    async def _pass(self, batch: set[str], full: bool) -> None:
        self._idle.clear()
        try:
            await self._pass_inner(batch, full)
        finally:
            self._idle.set()

    async def _pass_inner(self, batch: set[str], full: bool) -> None:
        started = time.monotonic()
        valid = self._valid()
        self._update_scope(valid)
        known = {i.name for i in valid if not (i.deleting and i.deletion_policy == "Orphan")}
        await asyncio.gather(*(self._guarded(ns, valid, known) for ns in sorted(batch)))
        if full:
            self._synced = {iso.name: (iso.uid, iso.generation) for iso in valid}
        self._status_due = True
        self._exposure_due = True
        self.passes += 1
        RECONCILE_SECONDS.observe(time.monotonic() - started)
        if len(batch) >= 200 and time.monotonic() - self._last_release > 30:
            self._last_release = time.monotonic()
            release_memory()  # a full GC costs time with a large heap: at most every 30 s

    async def _guarded(self, ns: str, valid: list[EnvironmentIsolation], known: set[str]) -> None:
        async with self._sem:
            try:
                await self._reconcile(ns, valid, known)
            except Exception:  # one namespace must never stop the loop
                log.exception("reconcile failed", namespace=ns)
                self._backoff(ns)

    def _live(self, ns: str) -> list[LivePolicy]:
        """The index's view, corrected by our own writes it has not seen yet."""
        live = dict(self.view.managed.get(ns, {}))
        pending = self._written.get(ns, {})
        for name, w in list(pending.items()):
            cur = live.get(name)
            stale = time.monotonic() - w.at > 30
            if w.policy is None:
                if cur is not None and cur.uid == w.uid and not stale:
                    del live[name]
                else:
                    del pending[name]
            elif (cur is not None and _rv(cur.resource_version) >= w.rv) or stale:
                del pending[name]
            else:
                live[name] = w.policy
        if not pending:
            self._written.pop(ns, None)
        return sorted(live.values(), key=lambda p: p.name)

    async def _reconcile(self, ns: str, valid: list[EnvironmentIsolation], known: set[str]) -> None:
        facts = self.view.namespaces.get(ns)
        if facts is None:  # the namespace is gone
            self._outcomes.pop(ns, None)
            self._retry_at.pop(ns, None)
            self._written.pop(ns, None)
            return
        decision = decide(facts, valid, self.ctx)
        plan = plan_namespace(decision, self._live(ns), known)
        previous = self._outcomes.get(ns)
        if decision.state is NamespaceState.CONFLICT and (
            previous is None or previous.decision.claimants != decision.claimants
        ):
            self.emit(
                ObjectRef("Namespace", ns),
                "Conflict",
                f"claimed by EnvironmentIsolations {', '.join(decision.claimants)}; only the "
                f"default-deny of {decision.owner} (the oldest) is kept",
                warning=True,
            )
        # The rendered policies are a function of the owner's spec (uid, generation), the
        # segment and the namespace, which the decision holds: hashing them is not needed.
        source = next(((i.uid, i.generation) for i in valid if i.name == decision.owner), None)
        outcome = Outcome.of(
            decision, True, None, plan.would_apply, plan.would_delete, hash(source)
        )
        if plan.empty:
            self._outcomes[ns] = outcome
            self._settled(ns)
            return
        bound = log.bind(namespace=ns, segment=decision.segment, isolation=decision.owner)
        done: list[str] = []
        try:
            for phase in phases(plan.actions):
                # Within a phase the order does not matter, so its writes go out together;
                # a phase starts only when the one before it has fully succeeded.
                results = await asyncio.gather(
                    *(self._execute(ns, a) for a in phase), return_exceptions=True
                )
                done.extend(str(a) for a, r in zip(phase, results, strict=True) if r is None)
                failed = [r for r in results if isinstance(r, BaseException)]
                if failed:
                    raise failed[0]
        except ApiError as e:
            bound.warning("write failed", error=str(e), done=done, transient=e.transient)
            self._outcomes[ns] = replace(outcome, converged=False, error=str(e))
            self._backoff(ns)
            return
        self._outcomes[ns] = outcome
        self._settled(ns)
        drift = (
            previous is not None
            and previous.converged
            and previous.decision == outcome.decision
            and previous.fingerprint == outcome.fingerprint
        )
        if drift:
            POLICIES_REPAIRED.inc(len(plan.actions))
        bound.info("repaired drift" if drift else "policies changed", actions=done)
        self._announce(facts, decision, plan, drift)

    async def _execute(self, ns: str, action: Action) -> None:
        bucket = self._written.setdefault(ns, {})
        if action.policy is not None:  # an apply
            body = await self.kube.apply_policy(action.policy)
            live = LivePolicy.from_body(body)
            # With our field manager the only one, the object is exactly what we applied.
            if not sole_manager(body.get("metadata") or {}) and not up_to_date(action.policy, live):
                # Another manager holds fields that apply leaves alone (an ingress rule
                # added to our default-deny by hand, a policy squatting our name): only a
                # replace of the whole object removes them.
                body = await self.kube.replace_policy(action.policy, live.resource_version)
                live = LivePolicy.from_body(body)
            bucket[action.name] = _Written(
                _rv(live.resource_version), live, live.uid, time.monotonic()
            )
            POLICIES_WRITTEN.labels("create" if action.created else "update").inc()
        else:
            await self.kube.delete_policy(ns, action.name, action.uid, action.resource_version)
            bucket[action.name] = _Written(0, None, action.uid, time.monotonic())
            POLICIES_WRITTEN.labels("delete").inc()

    def _announce(
        self, facts: NamespaceFacts, d: Decision, plan: NamespacePlan, drift: bool
    ) -> None:
        verbs: dict[str, list[str]] = {}
        for a in plan.actions:
            key = "deleted" if a.verb is Verb.DELETE else "created" if a.created else "updated"
            verbs.setdefault(key, []).append(a.name)
        what = "; ".join(f"{k} {', '.join(v)}" for k, v in sorted(verbs.items()))
        where = f" (segment {d.segment}, isolation {d.owner})" if d.owner else ""
        reason = "DriftRepaired" if drift else "PoliciesUpdated" if d.owner else "PoliciesRemoved"
        self.emit(ObjectRef("Namespace", facts.name), reason, what + where)

    def _settled(self, ns: str) -> None:
        self._retry_at.pop(ns, None)
        self._failures.pop(ns, None)

    def _backoff(self, ns: str) -> None:
        n = self._failures.get(ns, 0) + 1
        self._failures[ns] = n
        self._retry_at[ns] = time.monotonic() + min(60.0, 0.5 * 2**n)

    # -- status ------------------------------------------------------------------------------

    async def _maybe_flush_status(self) -> None:
        if not self._status_due:
            return
        if time.monotonic() - self._last_status < c.STATUS_MIN_INTERVAL_SECONDS:
            return
        self._status_due = False
        self._last_status = time.monotonic()
        self._export_metrics()
        outcomes = list(self._outcomes.values())
        for rec in self.records():
            iso = self.parse(rec)
            now = _now()
            if isinstance(iso, InvalidSpec):
                status = invalid_status(rec.generation, str(iso), rec.status, now)
            else:
                synced = self._synced.get(rec.name) == (iso.uid, iso.generation)
                status = status_for(
                    iso, outcomes, rec.status, now, not synced, self.monitor.exposures.get(rec.name)
                )
            if dict(status) == dict(rec.status):
                continue
            sent, at = self._sent.get(rec.name, ({}, 0.0))
            if sent == status and time.monotonic() - at < 10:
                continue  # written already; the watch has not delivered it yet
            self._sent[rec.name] = (status, time.monotonic())
            try:
                await self.kube.apply_status(rec.name, status)
            except ApiError as e:
                log.warning("status write failed", isolation=rec.name, error=str(e))
                self._status_due = True
                continue
            self._status_events(rec, status)

    def _status_events(self, rec: IsolationRecord, status: StatusDict) -> None:
        """Events for what a person should hear about, once per change (never per loop)."""
        old = {x.get("type"): x for x in rec.status.get("conditions") or []}
        ref = ObjectRef(c.KIND, rec.name, rec.uid, c.API_VERSION)
        for cond in status.get("conditions", []):
            before = old.get(cond["type"]) or {}
            moved = before.get("status") != cond["status"] or before.get("reason") != cond["reason"]
            if cond["type"] == "Ready":
                new_gen = rec.status.get("observedGeneration") != status.get("observedGeneration")
                if cond["reason"] == "Progressing" or not (
                    moved or (new_gen and cond["status"] == "True")
                ):
                    continue
                self.emit(ref, cond["reason"], cond["message"], cond["status"] != "True")
            elif (
                cond["type"] == "Conflict"
                and moved
                and (cond["status"] == "True" or before.get("status") == "True")
            ):
                self.emit(ref, cond["reason"], cond["message"], cond["status"] == "True")

    # -- exposures ---------------------------------------------------------------------------

    async def _maybe_analyse(self) -> None:
        if not self._exposure_due or self.view.unfetched:
            return  # not before every managed namespace's policies are known
        if time.monotonic() - self._last_exposure < EXPOSURE_INTERVAL_SECONDS:
            return
        self._exposure_due = False
        self._last_exposure = time.monotonic()
        found = self.monitor.analyse(
            self._outcomes, self.view.namespaces, self.view.managed, self.view.foreign
        )
        changed, new = self.monitor.update(found, (r.name for r in self.records()))
        if changed:
            self._status_due = True
        self._report_impersonators()
        for iso, e in new:
            where = e.destination if e.destination_segment else e.source
            log.warning("cross-segment exposure", isolation=iso, namespace=where, exposure=str(e))
            self.emit(
                ObjectRef("Namespace", where),
                "CrossSegmentExposure",
                f"{e} (EnvironmentIsolation {iso} does not declare this path)",
                warning=True,
            )

    def _report_impersonators(self) -> None:
        """One Warning per policy that carries our label without being ours (never adopted)."""
        # Only where it matters: in namespaces an EnvironmentIsolation manages.
        current = {
            key: uid
            for key, uid in self.view.impersonating.items()
            if (o := self._outcomes.get(key[0])) is not None and o.decision.owner is not None
        }
        for (ns, name), uid in sorted(current.items()):
            if self._impersonators.get((ns, name)) == uid:
                continue
            log.warning("policy carries the operator's label but is not its own",
                        namespace=ns, policy=name)  # fmt: skip
            self.emit(
                ObjectRef("Namespace", ns),
                "ImpersonatedPolicy",
                f"NetworkPolicy {ns}/{name} carries the label {c.LABEL_MANAGED_BY}="
                f"{c.MANAGED_BY} but was not written by envisolation; it is analysed like any "
                "other policy and never adopted",
                warning=True,
            )
        self._impersonators = current

    def _export_metrics(self) -> None:
        NAMESPACES.clear()
        counts: dict[tuple[str, str, str], int] = {}
        for o in self._outcomes.values():
            d = o.decision
            iso = d.owner or (d.claimants[0] if d.state is NamespaceState.EXCLUDED else None)
            if iso is None:
                continue
            key = (iso, d.segment or "", d.state.value)
            counts[key] = counts.get(key, 0) + 1
        for (iso, seg, state), n in counts.items():
            NAMESPACES.labels(iso, seg, state).set(n)
