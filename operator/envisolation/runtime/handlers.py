"""Kopf handlers: thin. Kopf handles our own EnvironmentIsolation only.

It gets an index (complete before any handler runs), Kopf's change-detecting handlers
and a finalizer (only with deletionPolicy Delete). Namespaces and NetworkPolicies, the
many objects, are listed and watched by the controller itself (see view.py for why);
nothing here writes to them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import structlog

from envisolation.policy.render import RenderContext
from envisolation.runtime.api import ObjectRef
from envisolation.runtime.client import Kube, load_config
from envisolation.runtime.controller import Controller
from envisolation.runtime.watch import WatchClient
from envisolation.spec import constants as c
from envisolation.spec.model import InvalidSpec, IsolationRecord

log = structlog.get_logger("envisolation.handlers")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{c.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
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
    kube = Kube(cfg)
    memo.watcher = WatchClient(cfg)
    ctx = RenderContext(
        operator_namespace=str(memo.get("operator_namespace", c.DEFAULT_OPERATOR_NAMESPACE))
    )
    resync = float(memo.get("resync_seconds", c.DEFAULT_RESYNC_SECONDS))
    memo.kube = kube
    memo.controller = Controller(kube, memo.watcher, ctx, resync_seconds=resync)
    memo.task = asyncio.create_task(memo.controller.run(), name="envisolation-controller")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("task")
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if memo.get("kube") is not None:
        await memo.kube.aclose()
    if memo.get("watcher") is not None:
        memo.watcher.close()


@kopf.on.probe(id="controller")
async def probe(memo: kopf.Memo, **_: Any) -> str:
    task = memo.get("task")
    if task is None or task.done():
        raise RuntimeError("the reconcile loop is not running")
    return f"{memo.controller.passes} passes"


# -- indexes (no writes, complete before any handler runs) ---------------------------------
# Every handler is a coroutine: it runs on the event loop, where the controller lives
# (a sync handler would run in Kopf's thread pool and race with it).


@kopf.index(c.GROUP, c.VERSION, c.PLURAL)
async def isolation_records(body: kopf.Body, name: str, **_: Any) -> dict[str, IsolationRecord]:
    return {name: IsolationRecord.from_body(body)}


def _controller(memo: kopf.Memo, kwargs: dict[str, Any]) -> Controller:
    controller: Controller = memo.controller
    controller.bind(kwargs["isolation_records"])
    return controller


# -- our own resource ---------------------------------------------------------------------


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
async def isolation_event(type: str | None, memo: kopf.Memo, **kwargs: Any) -> None:
    controller = _controller(memo, kwargs)
    if type == "DELETED":
        controller.touch_all()  # its namespaces may now belong to another isolation


@kopf.on.resume(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.create(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.update(c.GROUP, c.VERSION, c.PLURAL, field="spec")
async def reconcile_isolation(
    body: kopf.Body, name: str, uid: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    """One idempotent reconcile: validate, then let the controller converge every namespace."""
    controller = _controller(memo, kwargs)
    record = IsolationRecord.from_body(body)
    parsed = controller.parse(record)
    controller.touch_all()  # status follows from the controller, valid or not
    if isinstance(parsed, InvalidSpec):
        await memo.kube.post_event(
            ObjectRef(c.KIND, name, uid, c.API_VERSION), "InvalidSpec", str(parsed), warning=True
        )
        raise kopf.PermanentError(str(parsed))
    log.info("spec accepted", isolation=name, generation=record.generation)


def _delete_policy(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy") == "Delete"


@kopf.on.delete(c.GROUP, c.VERSION, c.PLURAL, when=_delete_policy)
async def remove_policies(name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    """deletionPolicy Delete: hold the finalizer until every policy of ours is gone."""
    controller = _controller(memo, kwargs)
    controller.touch_all()
    left = controller.remaining(name)
    if left:
        raise kopf.TemporaryError(f"{left} NetworkPolicies left to delete", delay=1)
    log.info("all policies removed", isolation=name)
