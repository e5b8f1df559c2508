"""Leader election on a coordination.k8s.io/v1 Lease, on the event loop, failing closed.

Why our own and not `kubernetes.leaderelection`: that one is synchronous (blocking calls
and sleeps in threads of its own, callbacks from those threads), never releases the
Lease on shutdown (so a rolling update waits out a whole lease), and gives the work it
guards no way to stop writing in time: a leader paused past its lease keeps running its
work while its renew loop finds out. Here every write asks `may_write()` first (the
client does: client.Kube's gate), and that answer turns false `renew_deadline` after the
last renewal that succeeded was *sent*, on this process's monotonic clock, which keeps
counting while the process is stopped. The lease is judged expired by others
`lease_duration` after they *saw* that renewal (client-go's rule, on their own clocks),
so with renew_deadline < lease_duration a leader stops writing before anyone else can
start. A leader that cannot renew in time exits (Kubernetes restarts it as a standby).
What the gate cannot stop: a request that passed it and was then held up (a process
paused between the check and the socket write, a new TCP connection still opening) goes
out late. The check is the last step before the request is handed to aiohttp, so the
window is that connect; a Lease cannot fence the API server itself.

The algorithm is client-go's: a candidate reads the Lease every `retry_period`; it takes
a Lease that is free (no holder: released) or whose record has not changed for
`lease_duration` by its own clock, with a compare-and-swap update (resourceVersion);
the holder renews every `retry_period`; on SIGTERM the holder releases (empty holder).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import structlog

from envisolation.runtime.api import ApiError
from envisolation.runtime.metrics import LEADER, LEADER_TRANSITIONS

COORDINATION = "/apis/coordination.k8s.io/v1"

log = structlog.get_logger("envisolation.leader")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class LeaseSettings:
    """controller-runtime's defaults: 15 s lease, 10 s renew deadline, 2 s retry."""

    namespace: str
    name: str = "envisolation"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration, got "
                f"{self.retry_period} / {self.renew_deadline} / {self.lease_duration} s"
            )


def default_identity() -> str:
    """The pod's name (POD_NAME, from the Downward API), else host name and pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


def default_namespace() -> str:
    """The pod's own namespace, else POD_NAMESPACE, else `default`."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return os.environ.get("POD_NAMESPACE") or "default"


class Requester(Protocol):
    async def request(
        self, verb: str, method: str, path: str, *, body: Any = None, adaptive: bool = True
    ) -> Any: ...


class LeaseApi(Protocol):
    async def get_lease(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    async def create_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any]
    ) -> Mapping[str, Any]: ...
    async def update_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any], resource_version: str
    ) -> Mapping[str, Any]: ...


class LeaseClient:
    """The Lease calls, over the operator's client (never gated: they decide the gate).

    Not behind the client's adaptive in-flight limit and not retried on 429: a renewal
    must not queue behind throttled writes (the elector's own loop tries again)."""

    def __init__(self, kube: Requester) -> None:
        self._kube = kube

    @staticmethod
    def _path(namespace: str, name: str = "") -> str:
        path = f"{COORDINATION}/namespaces/{quote(namespace, safe='')}/leases"
        return f"{path}/{quote(name, safe='')}" if name else path

    async def get_lease(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            lease: Mapping[str, Any] = await self._kube.request(
                "get", "GET", self._path(namespace, name), adaptive=False
            )
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        return lease

    async def create_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip
        out: Mapping[str, Any] = await self._kube.request(
            "create", "POST", self._path(namespace), body=body, adaptive=False
        )
        return out

    async def update_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any], resource_version: str
    ) -> Mapping[str, Any]:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace,
                             "resourceVersion": resource_version}, "spec": spec}  # fmt: skip
        out: Mapping[str, Any] = await self._kube.request(
            "update", "PUT", self._path(namespace, name), body=body, adaptive=False
        )
        return out


def _micro_time() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: LeaseApi,
        settings: LeaseSettings,
        on_lost: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self.settings = settings
        self._on_lost = on_lost
        self._clock = clock
        self.leading = asyncio.Event()
        self._renewed_at = float("-inf")  # when the last successful renewal was sent
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._resource_version = ""
        self._record: dict[str, Any] = {}
        LEADER.set(0)

    @property
    def identity(self) -> str:
        return self.settings.identity

    def may_write(self) -> bool:
        """True only while this instance leads and its last renewal is recent enough."""
        return (
            self.leading.is_set()
            and self._clock() - self._renewed_at < self.settings.renew_deadline
        )

    async def run(self) -> None:
        """Campaign, then renew, forever; calls `on_lost` (which must not return to
        writing) when a renewal could not be made within the renew deadline."""
        s = self.settings
        log.info("campaigning for leadership", lease=f"{s.namespace}/{s.name}",
                 identity=s.identity)  # fmt: skip
        while True:
            started = self._clock()
            try:
                ok = await self._try_acquire_or_renew(started)
            except ApiError as e:
                log.warning("lease request failed", error=str(e))
                ok = False
            if ok and not self.leading.is_set():
                self.leading.set()
                LEADER.set(1)
                LEADER_TRANSITIONS.inc()
                log.info("became the leader", identity=s.identity)
            if self.leading.is_set() and not self.may_write():
                LEADER.set(0)
                log.error("could not renew the lease in time; stopping", identity=s.identity)
                self._on_lost()
                return
            await asyncio.sleep(max(0.0, s.retry_period - (self._clock() - started)))

    async def _try_acquire_or_renew(self, now: float) -> bool:
        s = self.settings
        lease = await self._api.get_lease(s.namespace, s.name)
        if lease is None:
            spec = self._spec(acquired=True, transitions=0)
            try:
                body = await self._api.create_lease(s.namespace, s.name, spec)
            except ApiError as e:
                if e.status == 409:  # another candidate created it first
                    return False
                raise
            return self._took(body, now)
        spec = dict(lease.get("spec") or {})
        holder = str(spec.get("holderIdentity") or "")
        seen = (holder, str(spec.get("renewTime") or ""))
        if seen != self._observed:
            self._observed, self._observed_at = seen, now
        if holder and holder != s.identity:
            duration = float(spec.get("leaseDurationSeconds") or s.lease_duration)
            if now - self._observed_at < duration:
                return False  # held by another, and not expired by our clock
        transitions = int(spec.get("leaseTransitions") or 0)
        mine = holder == s.identity
        new = self._spec(
            acquired=not mine,
            transitions=transitions if mine else transitions + 1,
            acquire_time=str(spec.get("acquireTime") or "") if mine else "",
        )
        rv = str((lease.get("metadata") or {}).get("resourceVersion", ""))
        try:
            body = await self._api.update_lease(s.namespace, s.name, new, rv)
        except ApiError as e:
            if e.status == 409:  # someone else updated it first
                return False
            raise
        return self._took(body, now)

    def _spec(self, acquired: bool, transitions: int, acquire_time: str = "") -> dict[str, Any]:
        now = _micro_time()
        return {
            "holderIdentity": self.settings.identity,
            "leaseDurationSeconds": int(self.settings.lease_duration),
            "acquireTime": now if acquired or not acquire_time else acquire_time,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _took(self, body: Mapping[str, Any], sent: float) -> bool:
        spec = dict(body.get("spec") or {})
        self._resource_version = str((body.get("metadata") or {}).get("resourceVersion", ""))
        self._record = spec
        self._observed = (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""))
        self._observed_at = sent
        self._renewed_at = sent
        return True

    async def release(self) -> None:
        """Give the Lease up (on SIGTERM), so a standby takes it within a retry period.

        Writing stops first: nothing of ours is sent once the release is on its way."""
        if not self.leading.is_set() or not self.may_write():
            return
        self.leading.clear()
        LEADER.set(0)
        s = self.settings
        spec = {**self._record, "holderIdentity": "", "leaseDurationSeconds": 1,
                "renewTime": _micro_time()}  # fmt: skip
        try:
            await self._api.update_lease(s.namespace, s.name, spec, self._resource_version)
            log.info("released the lease", identity=s.identity)
        except ApiError as e:
            log.warning("could not release the lease; it expires by itself", error=str(e))
