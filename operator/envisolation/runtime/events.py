"""Kubernetes Events, queued and posted between reconcile passes, a few at a time.

An Event informs; a policy isolates: a rollout's thousand namespace Events never compete
with its writes. Beyond `bound` queued Events, new ones are dropped and counted
(envisolation_events_dropped_total), never the writes.
"""

from __future__ import annotations

import asyncio
import collections

from envisolation.runtime.api import EventApi, ObjectRef
from envisolation.runtime.metrics import EVENTS_DROPPED

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
