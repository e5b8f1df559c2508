"""The client under API Priority and Fairness: Retry-After, the adaptive in-flight limit,
one summarising warning, and the retry against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import pytest
import structlog
from aiohttp import web
from structlog.testing import LogCapture

from envisolation.runtime import client as kube_client
from envisolation.runtime import throttle
from envisolation.runtime.api import ApiError
from envisolation.runtime.metrics import API_IN_FLIGHT_SECONDS, API_QUEUED_SECONDS, API_THROTTLED
from envisolation.runtime.throttle import AdaptiveLimit, retry_after
from tests.unit.loopback import serve


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0", 0.0), (None, 1.0), ("soon", 1.0), ("-1", 1.0), ("nan", 1.0),
     ("inf", 1.0), ("1000", 30.0), ("0.5", 0.5)],
)  # fmt: skip
def test_retry_after_is_read_bounded_and_defaulted(header: str | None, seconds: float) -> None:
    assert retry_after(header) == seconds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_halves_once_per_window_and_grows_back_by_one() -> None:
    clock = Clock()
    lim = AdaptiveLimit(16, clock=clock)
    lim.throttled(1.0)
    assert lim.limit == 8
    lim.throttled(1.0)  # the same burst: not halved again
    lim.throttled(1.0)
    assert lim.limit == 8
    clock.now += 1.0
    lim.throttled(2.0)
    assert lim.limit == 4
    for _ in range(3):
        clock.now += 2.0
        lim.throttled(2.0)
    assert lim.limit == 1  # never below one
    clock.now += 2.0
    lim.throttled(2.0)
    assert lim.limit == 1
    # Additive increase: as many successes in a row as the limit, then one more.
    lim.succeeded()
    assert lim.limit == 2
    lim.succeeded()
    assert lim.limit == 2
    lim.succeeded()
    assert lim.limit == 3
    clock.now += 5
    lim.throttled(1.0)
    assert lim.limit == 1
    for _ in range(1 + 2 + 3 + 4):
        lim.succeeded()
    assert lim.limit == 5
    for _ in range(200):
        lim.succeeded()
    assert lim.limit == 16  # never above the maximum


@contextmanager
def capture_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """The throttle module's log lines. structlog.testing.capture_logs swaps the global
    processors, which a logger cached by an earlier test (`cache_logger_on_first_use`)
    never sees, so the module's logger itself is swapped for one that only captures."""
    cap = LogCapture()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(throttle, "log", structlog.wrap_logger(None, processors=[cap]))
        yield cap.entries


def test_one_warning_per_interval_not_one_per_429() -> None:
    clock = Clock()
    lim = AdaptiveLimit(16, clock=clock)
    with capture_logs() as logs:
        for _ in range(50):
            lim.throttled(1.0)
            clock.now += 0.1  # 5 s of 429s
        clock.now += throttle.SUMMARY_SECONDS
        lim.throttled(1.0)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 2
    assert warnings[0]["responses"] == 1
    assert warnings[1]["responses"] == 50  # the 49 after the first, and this one
    with capture_logs() as logs:
        for _ in range(200):
            lim.succeeded()
    assert [e["event"] for e in logs] == ["API no longer throttled"]


async def test_acquire_waits_for_a_free_slot() -> None:
    lim = AdaptiveLimit(2)
    await lim.acquire()
    await lim.acquire()
    third = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0.05)
    assert not third.done()
    lim.release()
    await asyncio.wait_for(third, 1)
    assert lim.in_flight == 2
    lim.release()
    lim.release()


async def test_in_flight_and_queued_are_integrated_over_time() -> None:
    """The counters' rates are the mean number in flight and waiting: the bench divides
    their change over a rollout by its duration to tell what bounded it."""
    clock = Clock()
    lim = AdaptiveLimit(2, clock=clock)
    flight0, queued0 = API_IN_FLIGHT_SECONDS._value.get(), API_QUEUED_SECONDS._value.get()
    await lim.acquire()
    clock.now += 2.0  # one in flight for 2 s
    await lim.acquire()
    clock.now += 1.0  # two for 1 s
    third = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    clock.now += 3.0  # two in flight and one waiting for 3 s
    lim.release()
    await asyncio.wait_for(third, 1)
    clock.now += 0.5  # two in flight (the third got the slot) for 0.5 s
    lim.release()
    lim.release()
    clock.now += 10.0  # nothing in flight: adds nothing
    await lim.acquire()
    assert API_IN_FLIGHT_SECONDS._value.get() - flight0 == 2.0 + 2.0 + 6.0 + 1.0
    assert API_QUEUED_SECONDS._value.get() - queued0 == 3.0
    lim.release()


async def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    lim = AdaptiveLimit(1)
    await lim.acquire()
    a = asyncio.create_task(lim.acquire())
    b = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0.01)
    lim.release()  # wakes a...
    a.cancel()  # ...which is cancelled before it runs: b must get the slot
    await asyncio.wait_for(b, 1)
    assert lim.in_flight == 1


@pytest.fixture
async def server() -> AsyncIterator[dict[str, Any]]:
    """An HTTP server on loopback that answers 429 (Retry-After: 0) `state["throttle"]`
    times, then 200."""
    state: dict[str, Any] = {"throttle": 0, "calls": 0, "in_flight": 0, "max_in_flight": 0}

    async def handler(request: web.Request) -> web.Response:
        state["calls"] += 1
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        try:
            await asyncio.sleep(0.01)
            if state["throttle"] > 0:
                state["throttle"] -= 1
                return web.json_response(
                    {"kind": "Status", "message": "too many requests"}, status=429,
                    headers={"Retry-After": state.get("retry_after", "0")},
                )  # fmt: skip
            return web.json_response({"kind": "Lease", "metadata": {"name": "x"}})
        finally:
            state["in_flight"] -= 1

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with serve(app) as kube:
        state["kube"] = kube
        yield state


async def test_the_client_sends_a_throttled_request_again(server: dict[str, Any]) -> None:
    before = API_THROTTLED._value.get()
    server["throttle"] = 3
    out = await server["kube"].request("get", "GET", "/apis/x")
    assert out["kind"] == "Lease"
    assert server["calls"] == 4
    assert API_THROTTLED._value.get() - before == 3


async def test_a_throttled_request_waits_its_retry_after(server: dict[str, Any]) -> None:
    server["throttle"] = 1
    server["retry_after"] = "0.3"
    t0 = time.monotonic()
    await server["kube"].request("get", "GET", "/apis/x")
    assert time.monotonic() - t0 >= 0.3
    assert server["calls"] == 2


async def test_many_requests_under_throttling_all_succeed_with_fewer_in_flight(
    server: dict[str, Any],
) -> None:
    server["throttle"] = 20
    outs = await asyncio.gather(
        *(server["kube"].request("get", "GET", f"/apis/{i}") for i in range(40))
    )
    assert len(outs) == 40
    assert server["calls"] == 60
    assert server["kube"].limit.limit < kube_client.CONNECTIONS


async def test_past_the_budget_a_429_fails_like_any_transient_error(
    server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(throttle, "THROTTLE_BUDGET_SECONDS", 0.0)
    server["throttle"] = 5
    with pytest.raises(ApiError) as err:
        await server["kube"].request("get", "GET", "/apis/x")
    assert err.value.status == 429
    assert err.value.transient


async def test_lease_calls_are_neither_limited_nor_retried(server: dict[str, Any]) -> None:
    server["throttle"] = 1
    with pytest.raises(ApiError) as err:
        await server["kube"].request("get", "GET", "/apis/lease", adaptive=False)
    assert err.value.status == 429
    assert server["calls"] == 1
