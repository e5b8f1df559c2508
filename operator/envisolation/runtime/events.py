"""Kubernetes Events, queued and posted between reconcile passes, a few at a time.

An Event informs; a policy isolates: a rollout's thousand namespace Events never compete
with its writes. Beyond `bound` queued Events, new ones are dropped and counted
(envisolation_events_dropped_total), never the writes.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import secrets
from typing import Any

from envisolation.runtime.api import EventApi, ObjectRef
from envisolation.runtime.metrics import EVENTS_DROPPED
from envisolation.spec import constants as c

MAX_QUEUED_EVENTS = 10_000
EVENTS_IN_FLIGHT = 2


class EventQueue:
    def __init__(self, api: EventApi, idle: asyncio.Event, bound: int = MAX_QUEUED_EVENTS) -> None:
        self._api = api
        self._idle = idle  # set while no reconcile pass runs
        self._bound = bound
        self._queue: collections.deque[tuple[ObjectRef, str, str, bool]] = collections.deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def emit(self, ref: ObjectRef, reason: str, message: str, warning: bool = False) -> None:
        if len(self._queue) >= self._bound:
            EVENTS_DROPPED.inc()
            return
        self._queue.append((ref, reason, message, warning))
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                await self._idle.wait()  # a pass in progress goes first
                n = min(EVENTS_IN_FLIGHT, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
                await asyncio.gather(*(self._api.post_event(*item) for item in batch))


def event_body(ref: ObjectRef, reason: str, message: str, warning: bool) -> dict[str, Any]:
    """A core/v1 Event about `ref` (in its namespace, else `default`), from envisolation."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name, "uid": ref.uid}
    if ref.namespace:
        involved["namespace"] = ref.namespace
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref.name}.{secrets.token_hex(8)}",
                     "namespace": ref.namespace or "default"},
        "involvedObject": involved,
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": c.EVENT_SOURCE},
        "reportingComponent": c.EVENT_SOURCE,
        "reportingInstance": c.EVENT_SOURCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }  # fmt: skip
