"""How many API requests are in flight, adapted to API Priority and Fairness.

An API server that is busy for this client answers 429 with `Retry-After` (APF rejects
what its priority level's seats and queues cannot hold). Backing off per namespace would
leave the granted seats idle while every namespace sleeps on its own timer; instead the
client as a whole adapts:

- a 429 is not a failure: that request gives its slot back, waits `Retry-After` and is
  sent again (the other requests go on: the seats APF grants stay busy);
- the number of requests in flight halves on throttling (at most once per `Retry-After`
  window, so one burst of 429s counts once) and grows back by one after as many
  successes in a row as the current limit (additive increase, multiplicative decrease);
- a request throttled for longer than THROTTLE_BUDGET_SECONDS fails like any other
  transient error, and the controller's per-namespace backoff takes over;
- one summarising warning per SUMMARY_SECONDS while throttled, not one per 429, and the
  counter `envisolation_api_throttled_total`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from envisolation.runtime.api import ApiError
from envisolation.runtime.metrics import (
    API_IN_FLIGHT_LIMIT,
    API_IN_FLIGHT_SECONDS,
    API_QUEUED_SECONDS,
    API_THROTTLED,
)

T = TypeVar("T")

log = structlog.get_logger("envisolation.client")

DEFAULT_RETRY_AFTER = 1.0  # seconds, when a 429 carries no (valid) Retry-After
MAX_RETRY_AFTER = 30.0  # a longer Retry-After is capped: the request is tried again by then
THROTTLE_BUDGET_SECONDS = 300.0  # then the 429 is an error like another (per-namespace backoff)
SUMMARY_SECONDS = 10.0  # one warning per this interval while throttled


def retry_after(header: str | None) -> float:
    """Seconds to wait from a Retry-After header (APF sends whole seconds)."""
    try:
        value = float(header) if header is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        value = DEFAULT_RETRY_AFTER
    if not math.isfinite(value) or value < 0:
        value = DEFAULT_RETRY_AFTER
    return min(value, MAX_RETRY_AFTER)


class Throttled(ApiError):
    """429 Too Many Requests: to be sent again after `after` seconds (its Retry-After)."""

    def __init__(self, message: str, header: str | None) -> None:
        super().__init__(429, message)
        self.after = retry_after(header)


async def send(limit: AdaptiveLimit, call: Callable[[], Awaitable[T]]) -> T:
    """`call()` within `limit`; a 429 gives the slot back, waits its Retry-After and is
    sent again, for at most THROTTLE_BUDGET_SECONDS (then it raises, as a transient error)."""
    started = time.monotonic()
    while True:
        await limit.acquire()
        try:
            out = await call()
        except Throttled as t:
            limit.release()
            limit.throttled(t.after)
            if time.monotonic() - started > THROTTLE_BUDGET_SECONDS:
                raise
            await asyncio.sleep(t.after)
            continue
        except BaseException:
            limit.release()
            raise
        limit.release()
        limit.succeeded()
        return out


class AdaptiveLimit:
    """A semaphore whose size follows the API server's answers (see the module's doc)."""

    def __init__(self, maximum: int, clock: Callable[[], float] = time.monotonic) -> None:
        if maximum < 1:
            raise ValueError(f"maximum must be at least 1, got {maximum}")
        self.maximum = maximum
        self.limit = maximum
        self.in_flight = 0
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._hold_until = 0.0  # the limit is not halved again before this
        self._successes = 0
        self._throttled = 0  # 429s since the last summary
        self._summary_at = 0.0
        self._accounted_at = clock()  # in-flight and queued integrals are current to here
        self._queued = 0
        API_IN_FLIGHT_LIMIT.set(maximum)

    def _account(self) -> None:
        """Add in-flight x time and queued x time since the last change to the integrals."""
        now = self._clock()
        elapsed = now - self._accounted_at
        self._accounted_at = now
        if elapsed > 0:
            API_IN_FLIGHT_SECONDS.inc(self.in_flight * elapsed)
            API_QUEUED_SECONDS.inc(self._queued * elapsed)

    async def acquire(self) -> None:
        while True:
            if self.in_flight < self.limit:
                self._account()
                self.in_flight += 1
                return
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._account()
            self._queued += 1
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                else:
                    self._wake()  # it was woken: pass the turn on
                raise
            finally:
                self._account()
                self._queued -= 1

    def release(self) -> None:
        self._account()
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def succeeded(self) -> None:
        self._successes += 1
        if self.limit < self.maximum and self._successes >= self.limit:
            self.limit += 1
            self._successes = 0
            API_IN_FLIGHT_LIMIT.set(self.limit)
            if self.limit == self.maximum:
                log.info("API no longer throttled", in_flight_limit=self.limit)
            self._wake()

    def throttled(self, after: float) -> None:
        """A 429 that asked to wait `after` seconds."""
        now = self._clock()
        API_THROTTLED.inc()
        self._successes = 0
        if now >= self._hold_until:
            self.limit = max(1, self.limit // 2)
            self._hold_until = now + max(after, DEFAULT_RETRY_AFTER)
            API_IN_FLIGHT_LIMIT.set(self.limit)
        self._throttled += 1
        if now - self._summary_at >= SUMMARY_SECONDS:
            log.warning(
                "API requests throttled (429); waiting as asked and sending fewer at once",
                responses=self._throttled,
                retry_after=after,
                in_flight_limit=self.limit,
            )
            self._throttled = 0
            self._summary_at = now
