"""Pods that use the host's network: NetworkPolicy does not apply to them at all.

Watched cluster-wide with a field selector (`spec.hostNetwork=true`), so the API server
sends only those pods (a handful per node: CNI agents, exporters), never the cluster's
other pods: the operator keeps no pod on its hot path. A 410 Gone relists the few;
anything else retries with backoff. Each change tells the monitor to report again
(status `notIsolatable`, the metric).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from envisolation.runtime.api import ApiError, Gone, Lister, Watcher

log = structlog.get_logger("envisolation.hostpods")
RESOURCE = "hostpods"  # api.py: /api/v1/pods?fieldSelector=spec.hostNetwork=true
MAX_RETRY_SECONDS = 30.0
FINISHED = ("Succeeded", "Failed")


class HostPods:
    def __init__(self, lister: Lister, watcher: Watcher, changed: Callable[[], None]) -> None:
        self.pods: set[tuple[str, str]] = set()  # (namespace, name)
        self._lister = lister
        self._watcher = watcher
        self._changed = changed
        self._rv = ""

    def event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        if meta.get("resourceVersion"):
            self._rv = str(meta["resourceVersion"])
        if kind == "BOOKMARK":
            return
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        running = (body.get("status") or {}).get("phase") not in FINISHED
        before = key in self.pods
        if kind != "DELETED" and running and (body.get("spec") or {}).get("hostNetwork"):
            self.pods.add(key)
        else:
            self.pods.discard(key)
        if before != (key in self.pods):
            self._changed()

    async def load(self) -> None:
        fresh = HostPods(self._lister, self._watcher, lambda: None)
        rv = await self._lister.list_each(RESOURCE, lambda body: fresh.event("ADDED", body))
        changed = fresh.pods != self.pods
        self.pods, self._rv = fresh.pods, rv
        if changed:
            self._changed()

    async def run(self) -> None:
        """List, then watch forever (a 410 relists; an error waits and tries again)."""
        delay = 1.0
        while True:
            try:
                if not self._rv:
                    await self.load()
                await self._watcher.watch(RESOURCE, self._rv, self.event)
                delay = 1.0
            except Gone:
                self._rv = ""
            except ApiError as e:
                log.warning("watching hostNetwork pods failed; retrying", error=str(e), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)

    def in_namespaces(self, namespaces: Mapping[str, str]) -> list[str]:
        """`segment: ns/name` of the pods in `namespaces` (name -> segment), sorted."""
        return sorted(
            f"{namespaces[ns]}: {ns}/{name}" for ns, name in self.pods if ns in namespaces
        )
