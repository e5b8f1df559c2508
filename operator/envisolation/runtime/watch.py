"""The watch client: the official Kubernetes client, one daemon thread per watch.

A watch holds its connection for a minute; parsing a burst of its events in a thread of
its own never stalls the event loop, and its own connection pool never holds up a write
(client.py). Events are handed to the loop in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import urllib3
from kubernetes import client

from envisolation.runtime.api import ApiError, Deliver, Gone
from envisolation.runtime.client import CONNECT_TIMEOUT, user_agent
from envisolation.runtime.metrics import API_ERRORS

WATCH_SECONDS = 60  # the server ends each watch after this; we re-watch from the last rv
WATCH_READ_TIMEOUT = 75.0  # silence this long (a frozen server) ends the watch from our side


class WatchClient:
    """Watches of Namespaces, NetworkPolicies and hostNetwork Pods (the watcher side of api.py)."""

    def __init__(self, cfg: client.Configuration, identity: str = "") -> None:
        self._api = client.ApiClient(cfg)
        self._api.user_agent = user_agent(identity)
        self._core = client.CoreV1Api(self._api)
        self._net = client.NetworkingV1Api(self._api)

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    async def watch(
        self,
        resource: str,
        resource_version: str,
        deliver: Deliver,
    ) -> None:
        """One watch request from `resource_version`, until the server ends it.

        Events are parsed in a thread of the watch's own and handed to `deliver` on the
        event loop, in order. Raises Gone for 410 and ApiError when the stream breaks.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        stop = threading.Event()

        def finish(error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def pump() -> None:
            error: BaseException | None = None
            try:
                for kind, obj in self._stream(resource, resource_version):
                    if stop.is_set():
                        return
                    loop.call_soon_threadsafe(deliver, kind, obj)
            except Exception as e:  # handed to the loop, raised there
                error = e
            with contextlib.suppress(RuntimeError):  # the loop is closed: we are exiting
                loop.call_soon_threadsafe(finish, error)

        # A daemon thread, not the pool: a blocked read must never hold up exit or writes.
        threading.Thread(target=pump, name=f"watch-{resource}", daemon=True).start()
        try:
            await done
        finally:
            stop.set()

    def _stream(self, resource: str, resource_version: str) -> Iterator[tuple[str, Any]]:
        fn: Callable[..., Any] = (
            self._core.list_namespace
            if resource == "namespaces"
            else self._net.list_network_policy_for_all_namespaces
        )
        extra: dict[str, str] = {}
        if resource == "hostpods":  # only the pods NetworkPolicy cannot isolate
            fn, extra = (
                self._core.list_pod_for_all_namespaces,
                {"field_selector": "spec.hostNetwork=true"},
            )
        try:
            resp = fn(
                **extra,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, WATCH_READ_TIMEOUT),
            )
        except client.ApiException as e:
            API_ERRORS.labels("watch", str(e.status)).inc()
            if e.status == 410:
                raise Gone(410, _reason(e)) from e
            raise ApiError(int(e.status or 0), _reason(e)) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            API_ERRORS.labels("watch", "connection").inc()
            raise ApiError(0, f"connection failed: {e}") from e
        try:
            rest = b""
            for chunk in resp.stream(65536, decode_content=True):
                rest += chunk
                *lines, rest = rest.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = str(event.get("type")), event.get("object") or {}
                    if kind == "ERROR":
                        code = int(obj.get("code") or 0)
                        API_ERRORS.labels("watch", str(code)).inc()
                        if code == 410:
                            raise Gone(410, str(obj.get("message", "too old resource version")))
                        raise ApiError(code, str(obj.get("message", "watch error")))
                    yield kind, obj
        except (urllib3.exceptions.HTTPError, OSError) as e:
            API_ERRORS.labels("watch", "connection").inc()
            raise ApiError(0, f"watch broke: {e}") from e
        finally:
            resp.release_conn()


def _reason(e: client.ApiException) -> str:
    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason)
    except (TypeError, ValueError):
        return str(e.reason)
