"""When a pass runs and over which namespaces: the dirty set, retries with backoff, resync.

Watch events mark namespaces dirty; a pass takes them all at once (a burst of events is
one batch). A namespace whose write failed is retried after 0.5 s, 1 s, 2 s ... up to
60 s. Every `resync_seconds` the view is listed again and every namespace planned.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Iterable

BATCH_SETTLE_SECONDS = 0.05  # after waking, let a burst of events land in one batch
MAX_BACKOFF_SECONDS = 60.0


class Schedule:
    def __init__(self, resync_seconds: float) -> None:
        self.resync_seconds = resync_seconds
        self._dirty: set[str] = set()
        self._all = True
        self._wake = asyncio.Event()
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._next_resync = time.monotonic() + resync_seconds

    # -- marking -----------------------------------------------------------------------------

    def touch(self, namespace: str) -> None:
        self._dirty.add(namespace)
        self._wake.set()

    def touch_all(self) -> None:
        self._all = True
        self._wake.set()

    def wake(self) -> None:
        """Something other than a namespace needs the loop (exposures, status)."""
        self._wake.set()

    def backoff(self, namespace: str) -> None:
        n = self._failures.get(namespace, 0) + 1
        self._failures[namespace] = n
        self._retry_at[namespace] = time.monotonic() + min(MAX_BACKOFF_SECONDS, 0.5 * 2**n)

    def settled(self, namespace: str) -> None:
        self._retry_at.pop(namespace, None)
        self._failures.pop(namespace, None)

    # -- taking ------------------------------------------------------------------------------

    def resync_due(self) -> bool:
        """True once per `resync_seconds`: time to list again and plan everything."""
        now = time.monotonic()
        if now < self._next_resync:
            return False
        self._all = True
        self._next_resync = now + self.resync_seconds
        return True

    def take(self, every: Callable[[], Collection[str]]) -> set[str]:
        """The namespaces to plan now: all of `every()` after touch_all (asked only then: it
        is the whole cluster), else the dirty ones and those whose retry is due."""
        if self._all:
            self._all = False
            self._dirty.clear()
            return set(every())
        now = time.monotonic()
        due = {ns for ns, t in self._retry_at.items() if t <= now}
        batch, self._dirty = self._dirty | due, set()
        return batch

    async def wait(self, deadlines: Iterable[float]) -> None:
        """Sleep until touched or the earliest deadline (resync, a retry, or `deadlines`)."""
        waits = [self._next_resync, *self._retry_at.values(), *deadlines]
        timeout = max(0.0, min(waits) - time.monotonic())
        if not self._dirty and not self._all:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        await asyncio.sleep(BATCH_SETTLE_SECONDS)
