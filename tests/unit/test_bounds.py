"""Bounds the README promises, each held to its figure: Events past the queue's bound are
dropped and counted (never blocking the caller, which goes on to write), and status is
written at most once per second per resource (a fake clock through Reporter's `clock`).
The exposure thresholds per family are in test_ipv6.py; the API timeouts against a frozen
API server in the chaos tier (scenario 5)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from envisolation.runtime.api import ObjectRef
from envisolation.runtime.events import MAX_QUEUED_EVENTS, EventQueue
from envisolation.runtime.metrics import EVENTS_DROPPED
from envisolation.runtime.reporter import Reporter
from envisolation.spec import constants as c
from envisolation.spec.model import EnvironmentIsolation, IsolationRecord

REF = ObjectRef("Namespace", "a", "uid-a", "v1")


class Posted:
    """An EventApi and StatusApi that records what it is given."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.statuses: list[tuple[str, Mapping[str, Any]]] = []

    async def post_event(
        self, ref: ObjectRef, reason: str, message: str, warning: bool = False
    ) -> None:
        self.events.append(message)

    async def apply_status(self, name: str, status: Mapping[str, Any]) -> None:
        self.statuses.append((name, status))


def test_the_default_bound_is_the_documented_10000() -> None:
    assert MAX_QUEUED_EVENTS == 10_000


async def test_events_past_the_bound_are_dropped_and_counted_without_blocking() -> None:
    api, idle = Posted(), asyncio.Event()  # a reconcile pass runs: nothing is posted yet
    queue = EventQueue(api, idle, bound=3)
    before = EVENTS_DROPPED._value.get()
    for i in range(5):
        queue.emit(REF, "PoliciesUpdated", f"event {i}")  # returns at once, full or not
    assert len(queue) == 3
    assert EVENTS_DROPPED._value.get() - before == 2
    runner = asyncio.create_task(queue.run())
    await asyncio.sleep(0.05)
    assert api.events == []  # a pass in progress goes first
    idle.set()
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(api.events) == 3:
            break
    assert api.events == ["event 0", "event 1", "event 2"]  # the oldest kept, in order
    queue.emit(REF, "PoliciesUpdated", "event 5")  # room again
    await asyncio.sleep(0.05)
    assert api.events[-1] == "event 5"
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


def _record(name: str, generation: int) -> IsolationRecord:
    body = {"metadata": {"name": name, "uid": f"uid-{name}", "generation": generation},
            "spec": {"segments": [{"name": "dev"}]}}  # fmt: skip
    return IsolationRecord(name, f"uid-{name}", generation, False, body, {})


async def test_status_is_written_at_most_once_per_second_per_resource() -> None:
    now = [1000.0]
    api = Posted()
    reporter = Reporter(api, EventQueue(api, asyncio.Event()), clock=lambda: now[0])
    assert c.STATUS_MIN_INTERVAL_SECONDS == 1.0

    async def flush(generation: int) -> None:
        reporter.due = True  # something changed: the controller marks the status due
        records = [_record("one", generation), _record("two", generation)]
        await reporter.flush(records, lambda r: EnvironmentIsolation.from_body(r.body), {}, {}, {})

    await flush(1)
    assert [n for n, _ in api.statuses] == ["one", "two"]
    now[0] += 0.5
    await flush(2)
    now[0] += 0.49
    await flush(3)
    assert len(api.statuses) == 2, "a change within the second waits"
    assert reporter.next_at() == [1001.0]  # and the loop is told when to come back
    now[0] = 1001.0
    await flush(4)
    assert [n for n, _ in api.statuses[2:]] == ["one", "two"]
    assert api.statuses[-1][1]["observedGeneration"] == 4  # the newest state, not a backlog
    # a change every 0.1 s for 10 s: at most 11 writes each (one per second, and the first)
    for step in range(100):
        now[0] = 1002.0 + step * 0.1
        await flush(5 + step)
    for name in ("one", "two"):
        assert sum(n == name for n, _ in api.statuses[4:]) <= 11
