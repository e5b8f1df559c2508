"""What a person sees: the EnvironmentIsolations' status, Events, and the namespace gauge.

Status is coalesced: a pass only marks it due, and it is written at most once a second
per resource, only when it differs from what the API holds (and not again while the
watch has not delivered our last write). Events go out once per change, never per loop.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import structlog

from envisolation.policy.conditions import Exposure, Outcome, invalid_status, status_for
from envisolation.policy.plan import NamespacePlan, Verb
from envisolation.policy.render import Decision, NamespaceState
from envisolation.runtime.api import ApiError, ObjectRef, StatusApi
from envisolation.runtime.events import EventQueue
from envisolation.runtime.metrics import NAMESPACES
from envisolation.spec import constants as c
from envisolation.spec.kinds import StatusDict
from envisolation.spec.model import EnvironmentIsolation, InvalidSpec, IsolationRecord

log = structlog.get_logger("envisolation.reporter")
SENT_MEMORY_SECONDS = 10.0  # how long a status write of ours counts as "not delivered yet"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reporter:
    def __init__(
        self,
        api: StatusApi,
        events: EventQueue,
        min_interval: float = c.STATUS_MIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self.events = events
        self._min_interval = min_interval
        self._clock = clock
        self.due = True
        self._last = 0.0
        self._sent: dict[str, tuple[StatusDict, float]] = {}

    def next_at(self) -> list[float]:
        """When the loop must come back to flush (empty: nothing due)."""
        return [self._last + self._min_interval] if self.due else []

    # -- status ------------------------------------------------------------------------------

    async def flush(
        self,
        records: Sequence[IsolationRecord],
        parse: Callable[[IsolationRecord], EnvironmentIsolation | InvalidSpec],
        outcomes: Mapping[str, Outcome],
        synced: Mapping[str, tuple[str, int]],
        exposures: Mapping[str, Sequence[Exposure]],
        not_isolatable: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Write each isolation's status if due and changed.

        `synced`: isolation -> (uid, generation) that its last full pass used; a
        generation not yet fully planned reports Progressing.
        """
        if not self.due or self._clock() - self._last < self._min_interval:
            return
        self.due = False
        self._last = self._clock()
        export_namespace_gauge(outcomes.values())
        all_outcomes = list(outcomes.values())
        for rec in records:
            iso = parse(rec)
            if isinstance(iso, InvalidSpec):
                status = invalid_status(rec.generation, str(iso), rec.status, _now())
            else:
                pending = synced.get(rec.name) != (iso.uid, iso.generation)
                status = status_for(
                    iso, all_outcomes, rec.status, _now(), pending, exposures.get(rec.name),
                    (not_isolatable or {}).get(rec.name),
                )  # fmt: skip
            if dict(status) == dict(rec.status):
                continue
            sent, at = self._sent.get(rec.name, ({}, 0.0))
            if sent == status and self._clock() - at < SENT_MEMORY_SECONDS:
                continue  # written already; the watch has not delivered it yet
            self._sent[rec.name] = (status, self._clock())
            try:
                await self._api.apply_status(rec.name, status)
            except ApiError as e:
                log.warning("status write failed", isolation=rec.name, error=str(e))
                self.due = True
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
                self.events.emit(ref, cond["reason"], cond["message"], cond["status"] != "True")
            elif (
                cond["type"] == "Conflict"
                and moved
                and (cond["status"] == "True" or before.get("status") == "True")
            ):
                self.events.emit(ref, cond["reason"], cond["message"], cond["status"] == "True")

    # -- namespace Events --------------------------------------------------------------------

    def conflict(self, ns: str, decision: Decision, previous: Outcome | None) -> None:
        """A namespace claimed twice: one Warning when the set of claimants changes."""
        if decision.state is not NamespaceState.CONFLICT:
            return
        if previous is not None and previous.decision.claimants == decision.claimants:
            return
        self.events.emit(
            ObjectRef("Namespace", ns),
            "Conflict",
            f"claimed by EnvironmentIsolations {', '.join(decision.claimants)}; only the "
            f"default-deny of {decision.owner} (the oldest) is kept",
            warning=True,
        )

    def changed(self, ns: str, d: Decision, plan: NamespacePlan, drift: bool) -> None:
        """One Event per change of a namespace's policies."""
        verbs: dict[str, list[str]] = {}
        for a in plan.actions:
            key = "deleted" if a.verb is Verb.DELETE else "created" if a.created else "updated"
            verbs.setdefault(key, []).append(a.name)
        what = "; ".join(f"{k} {', '.join(v)}" for k, v in sorted(verbs.items()))
        where = f" (segment {d.segment}, isolation {d.owner})" if d.owner else ""
        reason = "DriftRepaired" if drift else "PoliciesUpdated" if d.owner else "PoliciesRemoved"
        self.events.emit(ObjectRef("Namespace", ns), reason, what + where)


def export_namespace_gauge(outcomes: Iterable[Outcome]) -> None:
    """envisolation_namespaces{isolation, segment, state}."""
    NAMESPACES.clear()
    counts: dict[tuple[str, str, str], int] = {}
    for o in outcomes:
        d = o.decision
        iso = d.owner or (d.claimants[0] if d.state is NamespaceState.EXCLUDED else None)
        if iso is None:
            continue
        key = (iso, d.segment or "", d.state.value)
        counts[key] = counts.get(key, 0) + 1
    for (iso, seg, state), n in counts.items():
        NAMESPACES.labels(iso, seg, state).set(n)
