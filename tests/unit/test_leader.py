"""Leader election's rules, on a fake Lease API and a fake clock (runtime/leader.py).

The real thing, with two operator processes, SIGKILL, SIGSTOP and the audit log, is in
tests/chaos/test_leader.py; here the rules themselves, each pinned."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

import pytest

from envisolation.runtime.api import ApiError
from envisolation.runtime.leader import LeaderElector, LeaseSettings

S = LeaseSettings(namespace="ns", name="lock", identity="a",
                  lease_duration=15, renew_deadline=10, retry_period=2)  # fmt: skip


class FakeLeases:
    """One Lease with compare-and-swap on resourceVersion, as the API server keeps it."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.fail = False

    async def get_lease(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        if self.fail:
            raise ApiError(0, "connection refused")
        lease = copy.deepcopy(self.lease)
        await asyncio.sleep(0)  # candidates interleave here, as real requests do
        return lease

    async def create_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if self.lease is not None:
            raise ApiError(409, "exists")
        return self._store(spec)

    async def update_lease(self, namespace: str, name: str, spec: Mapping[str, Any],
                           resource_version: str) -> Mapping[str, Any]:  # fmt: skip
        if self.fail:
            raise ApiError(0, "connection refused")
        if self.lease is None or resource_version != self.lease["metadata"]["resourceVersion"]:
            raise ApiError(409, "conflict")
        return self._store(spec)

    def _store(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        self.rv += 1
        self.lease = {"metadata": {"resourceVersion": str(self.rv)}, "spec": dict(spec)}
        return copy.deepcopy(self.lease)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(api: FakeLeases, clock: Clock, identity: str = "a") -> tuple[LeaderElector, list[str]]:
    lost: list[str] = []
    s = LeaseSettings(**{**S.__dict__, "identity": identity})
    return LeaderElector(api, s, on_lost=lambda: lost.append(identity), clock=clock), lost


async def test_the_first_candidate_creates_the_lease_and_leads() -> None:
    api, clock = FakeLeases(), Clock()
    a, _ = elector(api, clock)
    assert not a.may_write()
    assert await a._try_acquire_or_renew(clock())
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == "a"
    assert api.lease["spec"]["leaseDurationSeconds"] == 15


async def test_a_second_candidate_waits_a_full_lease_after_it_last_saw_a_change() -> None:
    api, clock = FakeLeases(), Clock()
    a, _ = elector(api, clock)
    b, _ = elector(api, clock, "b")
    assert await a._try_acquire_or_renew(clock())
    assert not await b._try_acquire_or_renew(clock())  # b sees the record for the first time
    clock.now += 14.9
    assert not await b._try_acquire_or_renew(clock())  # unchanged, but not yet 15 s
    clock.now += 0.2
    assert await b._try_acquire_or_renew(clock())
    assert api.lease is not None
    assert api.lease["spec"]["holderIdentity"] == "b"
    assert api.lease["spec"]["leaseTransitions"] == 1


async def test_renewals_keep_the_standby_out() -> None:
    api, clock = FakeLeases(), Clock()
    a, _ = elector(api, clock)
    b, _ = elector(api, clock, "b")
    assert await a._try_acquire_or_renew(clock())
    for _ in range(20):  # 40 s of renewals every 2 s: b sees a change each time
        clock.now += 2
        assert await a._try_acquire_or_renew(clock())
        assert not await b._try_acquire_or_renew(clock())


async def test_the_leader_stops_writing_at_the_renew_deadline_before_the_lease_expires() -> None:
    api, clock = FakeLeases(), Clock()
    a, _ = elector(api, clock)
    assert await a._try_acquire_or_renew(clock())
    a.leading.set()
    assert a.may_write()
    clock.now += S.renew_deadline - 0.01
    assert a.may_write()
    clock.now += 0.02
    assert not a.may_write(), "past the renew deadline nothing is written"
    assert S.renew_deadline < S.lease_duration, "...which is before anyone else may lead"


async def test_the_deadline_counts_from_when_the_renewal_was_sent_not_answered() -> None:
    api, clock = FakeLeases(), Clock()
    a, _ = elector(api, clock)
    sent = clock()
    clock.now += 5  # a slow answer
    assert await a._try_acquire_or_renew(sent)
    a.leading.set()
    clock.now = sent + S.renew_deadline + 0.01
    assert not a.may_write()


async def test_a_leader_that_cannot_renew_calls_on_lost_and_stops() -> None:
    api, clock = FakeLeases(), Clock()
    a, lost = elector(api, clock)
    assert await a._try_acquire_or_renew(clock())
    a.leading.set()
    api.fail = True
    clock.now += S.renew_deadline + 1  # e.g. the process was stopped, or the API is gone
    await asyncio.wait_for(a.run(), timeout=5)  # returns after on_lost
    assert lost == ["a"]
    assert not a.may_write()


async def test_release_empties_the_holder_so_a_standby_takes_over_at_once() -> None:
    api, clock = FakeLeases(), Clock()
    a, _ = elector(api, clock)
    b, _ = elector(api, clock, "b")
    assert await a._try_acquire_or_renew(clock())
    a.leading.set()
    assert not await b._try_acquire_or_renew(clock())
    await a.release()
    assert not a.may_write(), "writing stops before the release is sent"
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == ""
    clock.now += S.retry_period
    assert await b._try_acquire_or_renew(clock()), "no waiting out the lease"


async def test_two_candidates_racing_for_a_free_lease_get_one_leader() -> None:
    api, clock = FakeLeases(), Clock()
    a, _ = elector(api, clock)
    b, _ = elector(api, clock, "b")
    results = await asyncio.gather(
        a._try_acquire_or_renew(clock()), b._try_acquire_or_renew(clock())
    )
    assert sorted(results) == [False, True]


def test_settings_must_keep_retry_below_renew_below_lease() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaseSettings(namespace="n", lease_duration=10, renew_deadline=10, retry_period=2)
