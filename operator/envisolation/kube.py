"""The only module that talks to the Kubernetes API (Kopf's own watches aside).

Every call runs in a bounded thread pool, so the blocking official client never blocks
Kopf's event loop. Responses are read as raw JSON (`_preload_content=False`): the
client's model deserialisation is slow and we never need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import urllib3
from kubernetes import client, config

from envisolation import __version__
from envisolation import constants as c
from envisolation.kinds import PolicyDict, StatusDict
from envisolation.metrics import API_ERRORS, API_WRITES

APPLY = "application/apply-patch+yaml"
CONNECT_TIMEOUT = 10.0  # seconds to open a connection
CALL_TIMEOUT = 30.0  # seconds to read the answer to a write
LIST_TIMEOUT = 120.0  # seconds to read a cluster-wide LIST


class ApiError(Exception):
    """An API call failed; `transient` says whether a retry can fix it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.transient = status == 0 or status in (409, 429) or status >= 500 or status == 403


class Gone(ApiError):
    """410 Gone: the watch's resourceVersion was compacted away; only a relist helps."""


WATCHED = ("namespaces", "networkpolicies")
WATCH_SECONDS = 60  # the server ends each watch after this; we re-watch from the last rv
WATCH_READ_TIMEOUT = 75.0  # silence this long (a frozen server) ends the watch from our side


@dataclass(frozen=True)
class ObjectRef:
    """What an Event is about."""

    kind: str
    name: str
    uid: str = ""
    api_version: str = "v1"
    namespace: str = ""


def load_config() -> client.Configuration:
    """In-cluster config when running in a Pod, else the current kubeconfig."""
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    return cfg


class Kube:
    def __init__(self, cfg: client.Configuration | None = None, workers: int = 16) -> None:
        cfg = cfg or load_config()
        cfg.connection_pool_maxsize = workers
        self._api = client.ApiClient(cfg)
        # Named in the API server's audit log and metrics as what it is.
        self._api.user_agent = f"envisolation/{__version__}"
        self._net = client.NetworkingV1Api(self._api)
        self._core = client.CoreV1Api(self._api)
        self._custom = client.CustomObjectsApi(self._api)
        # Watches hold their connection for a minute: a pool of their own, so the writers'
        # pool never runs short and opens (and TLS-handshakes) throwaway connections.
        self._watch_api = client.ApiClient(cfg)
        self._watch_api.user_agent = self._api.user_agent
        self._watch_core = client.CoreV1Api(self._watch_api)
        self._watch_net = client.NetworkingV1Api(self._watch_api)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="kube")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()  # type: ignore[no-untyped-call]
        self._watch_api.close()  # type: ignore[no-untyped-call]

    async def _call(self, verb: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        # A frozen or half-dead API server must not hold a worker forever; a LIST of a
        # large cluster may legitimately take a while.
        timeout = (CONNECT_TIMEOUT, LIST_TIMEOUT if verb == "list" else CALL_TIMEOUT)
        kw.setdefault("_request_timeout", timeout)
        try:
            resp = await loop.run_in_executor(
                self._pool, partial(fn, *args, _preload_content=False, **kw)
            )
            data = resp.data
        except client.ApiException as e:
            API_ERRORS.labels(verb, str(e.status)).inc()
            raise ApiError(int(e.status or 0), _reason(e)) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            API_ERRORS.labels(verb, "connection").inc()
            raise ApiError(0, f"connection failed: {e}") from e
        return json.loads(data) if data else {}

    async def apply_policy(self, policy: PolicyDict) -> Mapping[str, Any]:
        """Server-side apply, forcing: the object is named and labelled as ours."""
        meta = policy["metadata"]
        out: Mapping[str, Any] = await self._call(
            "apply",
            self._net.patch_namespaced_network_policy,
            meta["name"],
            meta["namespace"],
            policy,
            field_manager=c.FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
        )
        API_WRITES.labels("apply").inc()
        return out

    async def replace_policy(self, policy: PolicyDict, resource_version: str) -> Mapping[str, Any]:
        """PUT the whole object: drops fields other managers hold, which apply cannot."""
        meta = policy["metadata"]
        body: dict[str, Any] = {**policy, "metadata": {**meta, "resourceVersion": resource_version}}
        out: Mapping[str, Any] = await self._call(
            "replace",
            self._net.replace_namespaced_network_policy,
            meta["name"],
            meta["namespace"],
            body,
            field_manager=c.FIELD_MANAGER,
        )
        API_WRITES.labels("replace").inc()
        return out

    async def delete_policy(
        self, namespace: str, name: str, uid: str, resource_version: str
    ) -> None:
        """Delete exactly the object we planned against; a 404 means it is already gone."""
        body = None
        if uid:
            pre = client.V1Preconditions(uid=uid, resource_version=resource_version or None)
            body = client.V1DeleteOptions(preconditions=pre)
        try:
            await self._call(
                "delete",
                self._net.delete_namespaced_network_policy,
                name,
                namespace,
                body=body,
            )
        except ApiError as e:
            if e.status != 404:
                raise
        API_WRITES.labels("delete").inc()

    async def apply_status(self, name: str, status: StatusDict) -> None:
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND,
            "metadata": {"name": name},
            "status": status,
        }
        try:
            await self._call(
                "patch",
                self._custom.patch_cluster_custom_object_status,
                c.GROUP,
                c.VERSION,
                c.PLURAL,
                name,
                body,
                field_manager=c.FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
            )
        except ApiError as e:
            if e.status != 404:  # deleted meanwhile: nothing to report on
                raise
        API_WRITES.labels("status").inc()

    async def watch(
        self,
        resource: str,
        resource_version: str,
        deliver: Callable[[str, Mapping[str, Any]], None],
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
            self._watch_core.list_namespace
            if resource == "namespaces"
            else self._watch_net.list_network_policy_for_all_namespaces
        )
        try:
            resp = fn(
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

    async def list_cluster(self) -> tuple[list[Any], str, list[Any], str]:
        """Every Namespace and NetworkPolicy, with each listing's resourceVersion."""
        namespaces, policies = await asyncio.gather(
            self._call("list", self._core.list_namespace),
            self._call("list", self._net.list_network_policy_for_all_namespaces),
        )
        return (
            list(namespaces.get("items") or []),
            str((namespaces.get("metadata") or {}).get("resourceVersion", "")),
            list(policies.get("items") or []),
            str((policies.get("metadata") or {}).get("resourceVersion", "")),
        )

    async def list_for_verify(self) -> list[Mapping[str, Any]]:
        """EnvironmentIsolations, Namespaces and NetworkPolicies, as plain objects."""
        isolations, namespaces, policies = await asyncio.gather(
            self._call(
                "list",
                self._custom.list_cluster_custom_object,
                c.GROUP,
                c.VERSION,
                c.PLURAL,
            ),
            self._call("list", self._core.list_namespace),
            self._call("list", self._net.list_network_policy_for_all_namespaces),
        )
        out: list[Mapping[str, Any]] = []
        for kind, listing in (
            (c.KIND, isolations),
            ("Namespace", namespaces),
            ("NetworkPolicy", policies),
        ):
            out.extend({**item, "kind": kind} for item in listing.get("items") or [])
        return out

    async def post_event(
        self, ref: ObjectRef, reason: str, message: str, warning: bool = False
    ) -> None:
        """One core/v1 Event; failures are swallowed, an Event is never worth a retry loop."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ns = ref.namespace or "default"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{ref.name}.{secrets.token_hex(8)}", "namespace": ns},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "name": ref.name,
                "uid": ref.uid,
                **({"namespace": ref.namespace} if ref.namespace else {}),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": c.EVENT_SOURCE},
            "reportingComponent": c.EVENT_SOURCE,
            "reportingInstance": c.EVENT_SOURCE,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._call("create", self._core.create_namespaced_event, ns, body)
        except ApiError:
            return
        API_WRITES.labels("event").inc()


def _reason(e: client.ApiException) -> str:
    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason)
    except (TypeError, ValueError):
        return str(e.reason)
