"""The only module that talks to the Kubernetes API (Kopf's own watch of the CR aside).

Writes and LISTs go through one aiohttp session on the event loop (aiohttp comes with
Kopf): the official client in a thread pool cost twice the CPU per write (its request
validation, urllib3, and threads contending for the GIL with the event loop), CPU that a
rollout takes from the API server on a small node. Watches keep the official client,
each in a thread of its own, so parsing a burst of events never stalls the loop.
LISTs are read a page at a time, so a cluster-wide listing is never held whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import secrets
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import urllib3
from kubernetes import client, config

from envisolation import __version__
from envisolation.runtime.metrics import API_ERRORS, API_WRITES
from envisolation.spec import constants as c
from envisolation.spec.kinds import PolicyDict, StatusDict

APPLY = "application/apply-patch+yaml"
JSON = "application/json"
# Client settings, in one place, each with its reason:
CONNECT_TIMEOUT = 10.0  # seconds to open a connection: a dead endpoint is noticed soon
CALL_TIMEOUT = 30.0  # seconds to read the answer to a write: a frozen server frees the slot
LIST_TIMEOUT = 120.0  # seconds to read one page of a LIST (large objects, a busy server)
LIST_PAGE = 500  # objects per LIST page: bounds the memory a listing takes at once
CONNECTIONS = 16  # concurrent API calls; the controller runs 16 namespaces at a time
NETWORKING = "/apis/networking.k8s.io/v1"
PATHS = {"namespaces": "/api/v1/namespaces", "networkpolicies": f"{NETWORKING}/networkpolicies"}


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


def _ssl_context(cfg: client.Configuration) -> ssl.SSLContext | bool:
    """TLS as the kubeconfig (or the Pod's service account) says."""
    if not cfg.verify_ssl:
        return False
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    if cfg.assert_hostname is False:
        ctx.check_hostname = False
    return ctx


class Kube:
    def __init__(self, cfg: client.Configuration | None = None) -> None:
        cfg = cfg or load_config()
        self._cfg = cfg
        self._base = str(cfg.host).rstrip("/")
        self._ssl = _ssl_context(cfg)
        # Named in the API server's audit log and metrics as what it is.
        self.user_agent = f"envisolation/{__version__}"
        self._session: aiohttp.ClientSession | None = None
        # Watches hold their connection for a minute, in threads of their own, with the
        # official client (its own pool, so they never hold up a write).
        self._watch_api = client.ApiClient(cfg)
        self._watch_api.user_agent = self.user_agent
        self._watch_core = client.CoreV1Api(self._watch_api)
        self._watch_net = client.NetworkingV1Api(self._watch_api)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._watch_api.close()  # type: ignore[no-untyped-call]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=CONNECTIONS)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.user_agent, "Accept": JSON},
            )
        return self._session

    def _auth(self) -> dict[str, str]:
        # Asked per request: the client's hook re-reads a rotated service-account token,
        # and an exec plugin's token is refreshed when it expires.
        settings: Mapping[str, Any] = self._cfg.auth_settings()
        headers = {
            str(a["key"]): str(a["value"])
            for a in settings.values()
            if a.get("in") == "header" and a.get("value")
        }
        if not headers and self._cfg.username:
            headers["Authorization"] = str(self._cfg.get_basic_auth_token())
        return headers

    async def _call(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
        timeout: float = CALL_TIMEOUT,
    ) -> Any:
        headers = self._auth()
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"))
            headers["Content-Type"] = content_type
        try:
            async with self._http().request(
                method,
                self._base + path,
                params=params,
                data=data,
                headers=headers,
                proxy=self._cfg.proxy or None,
                server_hostname=self._cfg.tls_server_name or None,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=CONNECT_TIMEOUT, sock_read=timeout
                ),
            ) as resp:
                text = await resp.read()
                if resp.status >= 400:
                    API_ERRORS.labels(verb, str(resp.status)).inc()
                    cls = Gone if resp.status == 410 else ApiError
                    raise cls(resp.status, _message(text, resp.reason or ""))
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            API_ERRORS.labels(verb, "connection").inc()
            raise ApiError(0, f"connection failed: {type(e).__name__}: {e}") from e
        return json.loads(text) if text else {}

    async def _pages(self, path: str) -> AsyncIterator[tuple[list[Any], str]]:
        """A LIST, a page at a time: (items, the listing's resourceVersion)."""
        token = ""
        while True:
            params = {"limit": str(LIST_PAGE)}
            if token:
                params["continue"] = token
            page = await self._call("list", "GET", path, params=params, timeout=LIST_TIMEOUT)
            meta = page.get("metadata") or {}
            yield list(page.get("items") or []), str(meta.get("resourceVersion", ""))
            token = str(meta.get("continue") or "")
            if not token:
                return

    async def list_each(
        self, resource: str, each: Callable[[Mapping[str, Any]], object], namespace: str = ""
    ) -> str:
        """Hand every object of a LIST (cluster-wide, or of one namespace's policies) to
        `each`; returns its resourceVersion.

        A continue token that expired mid-listing raises Gone: list again from the start.
        """
        rv = ""
        path = self._policy_path(namespace) if namespace else PATHS[resource]
        async for items, page_rv in self._pages(path):
            rv = page_rv
            for item in items:
                each(item)
        return rv

    @staticmethod
    def _policy_path(namespace: str, name: str = "") -> str:
        path = f"{NETWORKING}/namespaces/{quote(namespace, safe='')}/networkpolicies"
        return f"{path}/{quote(name, safe='')}" if name else path

    async def apply_policy(self, policy: PolicyDict) -> Mapping[str, Any]:
        """Server-side apply, forcing: the object is named and labelled as ours."""
        meta = policy["metadata"]
        out: Mapping[str, Any] = await self._call(
            "apply",
            "PATCH",
            self._policy_path(meta["namespace"], meta["name"]),
            params={"fieldManager": c.FIELD_MANAGER, "force": "true"},
            body=policy,
            content_type=APPLY,
        )
        API_WRITES.labels("apply").inc()
        return out

    async def replace_policy(self, policy: PolicyDict, resource_version: str) -> Mapping[str, Any]:
        """PUT the whole object: drops fields other managers hold, which apply cannot."""
        meta = policy["metadata"]
        body: dict[str, Any] = {**policy, "metadata": {**meta, "resourceVersion": resource_version}}
        out: Mapping[str, Any] = await self._call(
            "replace",
            "PUT",
            self._policy_path(meta["namespace"], meta["name"]),
            params={"fieldManager": c.FIELD_MANAGER},
            body=body,
        )
        API_WRITES.labels("replace").inc()
        return out

    async def delete_policy(
        self, namespace: str, name: str, uid: str, resource_version: str
    ) -> None:
        """Delete exactly the object we planned against; a 404 means it is already gone."""
        body = None
        if uid:
            pre = {
                "uid": uid,
                **({"resourceVersion": resource_version} if resource_version else {}),
            }
            body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": pre}
        try:
            await self._call("delete", "DELETE", self._policy_path(namespace, name), body=body)
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
        path = f"/apis/{c.GROUP}/{c.VERSION}/{c.PLURAL}/{quote(name, safe='')}/status"
        try:
            await self._call(
                "patch",
                "PATCH",
                path,
                params={"fieldManager": c.FIELD_MANAGER, "force": "true"},
                body=body,
                content_type=APPLY,
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

    async def list_for_verify(self) -> list[Mapping[str, Any]]:
        """EnvironmentIsolations, Namespaces and NetworkPolicies, as plain objects."""
        out: list[Mapping[str, Any]] = []
        for kind, path in (
            (c.KIND, f"/apis/{c.GROUP}/{c.VERSION}/{c.PLURAL}"),
            ("Namespace", PATHS["namespaces"]),
            ("NetworkPolicy", PATHS["networkpolicies"]),
        ):
            async for items, _ in self._pages(path):
                out.extend({**item, "kind": kind} for item in items)
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
            await self._call(
                "create", "POST", f"/api/v1/namespaces/{quote(ns, safe='')}/events", body=body
            )
        except ApiError:
            return
        API_WRITES.labels("event").inc()


def _message(text: bytes, reason: str) -> str:
    """The message of a Status body, else the HTTP reason."""
    try:
        return str(json.loads(text or b"{}").get("message") or reason)
    except (TypeError, ValueError, AttributeError):
        return reason


def _reason(e: client.ApiException) -> str:
    try:
        return str(json.loads(e.body or "{}").get("message") or e.reason)
    except (TypeError, ValueError):
        return str(e.reason)
