"""The reconcile loop: dirty namespaces in, ordered writes out, status coalesced.

The loop reads as the algorithm. Take the namespaces the schedule says are dirty; for
each, decide what it needs (policy.render.decide), plan against what is live
(policy.plan), hand the plan to the writer; then let the reporter coalesce status and
Events, and the monitor look for exposures. Everything it reads comes from memory (the
view that sync.py keeps current), so a namespace event costs one namespace's plan,
never a relist, and an unchanged world costs no write. It knows nothing of Kopf
(handlers.py hands over the index of EnvironmentIsolations).

Its collaborators, one job each: Isolations (the specs, parsed once), ViewSync (LIST,
watches, scope), Schedule (dirty set, backoff, resync), PlanWriter (phases, the overlay
of our writes), Reporter and EventQueue (status, Events, gauges), ExposureMonitor,
MemoryTrim.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Protocol

import structlog

from envisolation.analysis.exposure import DEFAULT_WIDE, WidePrefixes
from envisolation.policy.conditions import Outcome
from envisolation.policy.plan import plan_namespace
from envisolation.policy.render import RenderContext, decide
from envisolation.runtime.api import (
    ApiError,
    EventApi,
    FinalizerApi,
    Lister,
    PolicyApi,
    StatusApi,
    Watcher,
)
from envisolation.runtime.events import EventQueue
from envisolation.runtime.finalizers import Finalizers
from envisolation.runtime.hostpods import HostPods
from envisolation.runtime.isolations import Isolations
from envisolation.runtime.memory import MemoryTrim
from envisolation.runtime.metrics import POLICIES_REPAIRED, RECONCILE_SECONDS
from envisolation.runtime.monitor import ExposureMonitor
from envisolation.runtime.reporter import Reporter
from envisolation.runtime.schedule import Schedule
from envisolation.runtime.sync import ViewSync
from envisolation.runtime.writer import PlanWriter
from envisolation.spec import constants as c
from envisolation.spec.model import EnvironmentIsolation, InvalidSpec, IsolationRecord

log = structlog.get_logger("envisolation.controller")
CONCURRENCY = 16  # namespaces reconciled at once (the client has as many connections)


class KubeApi(Lister, PolicyApi, StatusApi, EventApi, FinalizerApi, Protocol):
    """Everything but the watches: client.Kube."""


class Controller:
    def __init__(
        self,
        kube: KubeApi,
        watcher: Watcher,
        ctx: RenderContext,
        resync_seconds: float = c.DEFAULT_RESYNC_SECONDS,
        concurrency: int = CONCURRENCY,
        leadership: asyncio.Event | None = None,
        wide_prefixes: WidePrefixes = DEFAULT_WIDE,
    ) -> None:
        self.ctx = ctx
        self.isolations = Isolations()
        self.schedule = Schedule(resync_seconds)
        self.sync = ViewSync(kube, watcher, self)
        self.writer = PlanWriter(kube)
        self._idle = asyncio.Event()  # set while no reconcile pass runs
        self._idle.set()
        self.events = EventQueue(kube, self._idle)
        self.reporter = Reporter(kube, self.events)
        self.monitor = ExposureMonitor(self.events, wide_prefixes)
        self.host_pods = HostPods(kube, watcher, self.touch_exposure)
        self.monitor.host_pods = self.host_pods
        self.memory = MemoryTrim()
        self.finalizers = Finalizers(kube)
        self._kube = kube
        # Set while this instance may write (leader election); None: always (one replica).
        self.leadership = leadership
        self.ready = False  # the view is warm (or there is nothing to watch yet)
        self._sem = asyncio.Semaphore(concurrency)
        self._outcomes: dict[str, Outcome] = {}
        # isolation -> (uid, generation) that its last full pass used
        self._synced: dict[str, tuple[str, int]] = {}
        self.passes = 0  # completed reconcile passes (for tests and the health probe)

    # -- inputs (handlers.py, sync.py) -------------------------------------------------------

    def bind(self, records: Mapping[str, Collection[IsolationRecord]]) -> None:
        self.isolations.bind(records)

    def isolation_changed(self, event: str | None, record: IsolationRecord) -> bool:
        return self.isolations.changed(event, record)

    def touch(self, namespace: str) -> None:
        self.schedule.touch(namespace)

    def touch_all(self) -> None:
        self.schedule.touch_all()

    def touch_exposure(self) -> None:
        """A policy the operator does not own changed: look for exposures again."""
        self.monitor.due = True
        self.schedule.wake()

    # -- queries (handlers.py) ---------------------------------------------------------------

    def parse(self, record: IsolationRecord) -> EnvironmentIsolation | InvalidSpec:
        return self.isolations.parse(record)

    def remaining(self, isolation: str) -> int:
        """Live policies still labelled with `isolation` (for deletionPolicy Delete)."""
        managed = self.sync.view.managed
        return sum(
            1 for inner in managed.values() for p in inner.values() if p.isolation == isolation
        )

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        if not await self._isolations_exist():
            self.ready = True  # nothing to keep warm until the first one is created
        await self.isolations.bound.wait()
        self.sync.update_scope(self.isolations.valid())
        await self.sync.load(ours_only=True)  # the rest is listed after the first pass
        self.ready = True
        tasks = self.sync.start()
        tasks.append(asyncio.create_task(self.host_pods.run(), name="watch-hostpods"))
        tasks.append(asyncio.create_task(self.events.run(), name="events"))
        try:
            if self.leadership is not None and not self.leadership.is_set():
                log.info("standby: keeping the view warm until this instance leads")
                await self.leadership.wait()
                self.touch_all()  # plan everything from memory: writes only what differs
            while True:
                await self._turn()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _turn(self) -> None:
        if self.schedule.resync_due():
            await self.sync.load()  # also drops what a missed DELETED event left behind
        namespaces = self.sync.view.namespaces
        batch = self.schedule.take(lambda: namespaces.keys() | self._outcomes.keys())
        if batch:
            await self._pass(batch, full=batch >= namespaces.keys())
        await self.sync.fetch()
        await self.finalizers.reconcile(self.isolations.records(), self.remaining)
        names = [r.name for r in self.isolations.records()]
        if self.monitor.maybe_analyse(self._outcomes, self.sync.view, names):
            self.reporter.due = True
        await self.reporter.flush(
            self.isolations.records(),
            self.isolations.parse,
            self._outcomes,
            self._synced,
            self.monitor.exposures,
            self.monitor.not_isolatable,
        )
        await self.schedule.wait([*self.reporter.next_at(), *self.monitor.next_at()])

    async def _isolations_exist(self) -> bool:
        """One LIST of EnvironmentIsolations (Kopf's index fills on its own schedule)."""
        found: list[object] = []
        while True:
            try:
                await self._kube.list_each("environmentisolations", found.append)
                return bool(found)
            except ApiError as e:
                log.warning("listing EnvironmentIsolations failed; retrying", error=str(e))
                await asyncio.sleep(2)

    async def _pass(self, batch: set[str], full: bool) -> None:
        self._idle.clear()
        try:
            started = time.monotonic()
            valid = self.isolations.valid()
            self.sync.update_scope(valid)
            known = {i.name for i in valid if not (i.deleting and i.deletion_policy == "Orphan")}
            await asyncio.gather(*(self._guarded(ns, valid, known) for ns in sorted(batch)))
            if full:
                self._synced = {iso.name: (iso.uid, iso.generation) for iso in valid}
            self.reporter.due = True
            self.monitor.due = True
            self.passes += 1
            RECONCILE_SECONDS.observe(time.monotonic() - started)
            self.memory.after_pass(len(batch))
        finally:
            self._idle.set()

    async def _guarded(self, ns: str, valid: list[EnvironmentIsolation], known: set[str]) -> None:
        async with self._sem:
            try:
                await self._reconcile(ns, valid, known)
            except Exception:  # one namespace must never stop the loop
                log.exception("reconcile failed", namespace=ns)
                self.schedule.backoff(ns)

    async def _reconcile(self, ns: str, valid: list[EnvironmentIsolation], known: set[str]) -> None:
        facts = self.sync.view.namespaces.get(ns)
        if facts is None:  # the namespace is gone
            self._outcomes.pop(ns, None)
            self.schedule.settled(ns)
            self.writer.forget(ns)
            return
        decision = decide(facts, valid, self.ctx)
        live = self.writer.live(ns, self.sync.view.managed.get(ns, {}))
        plan = plan_namespace(decision, live, known)
        previous = self._outcomes.get(ns)
        self.reporter.conflict(ns, decision, previous)
        # The rendered policies are a function of the owner's spec (uid, generation), the
        # segment and the namespace, which the decision holds: hashing them is not needed.
        source = next(((i.uid, i.generation) for i in valid if i.name == decision.owner), None)
        outcome = Outcome.of(
            decision, True, None, plan.would_apply, plan.would_delete, hash(source)
        )
        if plan.empty:
            self._outcomes[ns] = outcome
            self.schedule.settled(ns)
            return
        bound = log.bind(namespace=ns, segment=decision.segment, isolation=decision.owner)
        result = await self.writer.carry_out(ns, plan)
        if result.error is not None:
            e = result.error
            bound.warning("write failed", error=str(e), done=result.done, transient=e.transient)
            self._outcomes[ns] = replace(outcome, converged=False, error=str(e))
            self.schedule.backoff(ns)
            return
        self._outcomes[ns] = outcome
        self.schedule.settled(ns)
        drift = (
            previous is not None
            and previous.converged
            and previous.decision == outcome.decision
            and previous.fingerprint == outcome.fingerprint
        )
        if drift:
            POLICIES_REPAIRED.inc(len(plan.actions))
        bound.info("repaired drift" if drift else "policies changed", actions=result.done)
        self.reporter.changed(ns, decision, plan, drift)
