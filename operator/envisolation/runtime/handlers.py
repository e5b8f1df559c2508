"""Kopf handlers: thin, and none of them writes. Kopf handles our own EnvironmentIsolation only.

How Kopf runs under leader election: in every replica, with only an index and an event
handler on the EnvironmentIsolation, which read and never write. Kopf's change-detecting
handlers (`on.create/update/resume/delete`) would write their progress and
last-handled-configuration annotations and a finalizer from every replica, standby
included, and no gate of ours sits in front of Kopf's own client; so there are none.
What they did is the controller's now, through the one client whose writes ask the
elector first (client.Kube.gate): status and Events (reporter.py), and the finalizer
for deletionPolicy Delete (finalizers.py). Kopf's posting of Events is off, peering is
standalone (it is not leader election), scanning is off.

Namespaces and NetworkPolicies, the many objects, are listed and watched by the
controller itself (see view.py for why).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import kopf
import structlog

from envisolation.analysis.exposure import DEFAULT_WIDE
from envisolation.policy.render import RenderContext
from envisolation.runtime.client import Kube
from envisolation.runtime.config import load_config
from envisolation.runtime.controller import Controller
from envisolation.runtime.leader import LeaderElector, LeaseClient, LeaseSettings
from envisolation.runtime.watch import WatchClient
from envisolation.spec import constants as c
from envisolation.spec.model import IsolationRecord

log = structlog.get_logger("envisolation.handlers")
EXIT_LOST_LEADERSHIP = 3


def _lost_leadership() -> None:
    """Fail closed: exit at once (Kubernetes restarts the pod as a standby).

    Not a graceful shutdown: nothing of ours may run after this, and the gate already
    refuses every write."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_LOST_LEADERSHIP)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.posting.enabled = False  # our Events are explicit, one per change
    # Kopf watches only our own resource. The server ends each watch after a minute and
    # Kopf re-watches from the last resourceVersion (no relist); a watch silent for longer
    # than client_timeout is taken as dead: a frozen API server is noticed within 75 s.
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 75
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.batching.error_delays = (1, 2, 5, 10, 30, 60)
    settings.execution.max_workers = 4
    cfg = load_config()
    lease: LeaseSettings | None = memo.get("lease")
    identity = lease.identity if lease is not None else ""
    kube = Kube(cfg, identity)
    memo.kube = kube
    memo.watcher = WatchClient(cfg, identity)
    ctx = RenderContext(
        operator_namespace=str(memo.get("operator_namespace", c.DEFAULT_OPERATOR_NAMESPACE))
    )
    resync = float(memo.get("resync_seconds", c.DEFAULT_RESYNC_SECONDS))
    memo.elector = None
    if lease is not None:
        memo.elector = LeaderElector(LeaseClient(kube), lease, on_lost=_lost_leadership)
        kube.gate = memo.elector.may_write
        memo.elector_task = asyncio.create_task(memo.elector.run(), name="leader-election")
    leadership = memo.elector.leading if memo.elector is not None else None
    wide = memo.get("wide_prefixes") or DEFAULT_WIDE
    memo.controller = Controller(
        kube, memo.watcher, ctx, resync, leadership=leadership, wide_prefixes=wide
    )
    memo.task = asyncio.create_task(memo.controller.run(), name="envisolation-controller")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("elector") is not None:
        await memo.elector.release()  # writing stops first; a standby takes over at once
    for name in ("elector_task", "task"):
        task = memo.get(name)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if memo.get("kube") is not None:
        await memo.kube.aclose()
    if memo.get("watcher") is not None:
        memo.watcher.close()


@kopf.on.probe(id="controller")
async def probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """Liveness: the reconcile loop (and the elector) run; a standby is alive too."""
    for name in ("task", "elector_task"):
        task = memo.get(name)
        if task is not None and task.done():
            raise RuntimeError(f"{name} is not running")
    if memo.get("task") is None:
        raise RuntimeError("the reconcile loop is not running")
    elector = memo.get("elector")
    return {
        "passes": memo.controller.passes,
        "leader": elector is None or elector.may_write(),
        "ready": memo.controller.ready,
    }


# -- the index (no writes, complete before any resource handler runs) ------------------------
# Every handler is a coroutine: it runs on the event loop, where the controller lives
# (a sync handler would run in Kopf's thread pool and race with it).


@kopf.index(c.GROUP, c.VERSION, c.PLURAL)
async def isolation_records(body: kopf.Body, name: str, **_: Any) -> dict[str, IsolationRecord]:
    return {name: IsolationRecord.from_body(body)}


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def isolation_event(
    type: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
) -> None:
    """Any change to an EnvironmentIsolation: a new spec (or its deletion) replans every
    namespace; anything else (status, finalizers) only wakes the loop."""
    controller: Controller = memo.controller
    controller.bind(kwargs["isolation_records"])
    record = IsolationRecord.from_body(body)
    if controller.isolation_changed(type, record):
        controller.touch_all()
    else:
        controller.schedule.wake()
