"""The API client for writes, LISTs, status and Events: one aiohttp session on the loop.

aiohttp comes with Kopf. The official client in a thread pool cost twice the CPU per
write (its request validation, urllib3, and threads contending for the GIL with the
event loop), CPU that a rollout takes from the API server on a small node. Watches are
the other client (watch.py). LISTs are read a page at a time, so a cluster-wide listing
is never held whole.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes import client

from envisolation import __version__
from envisolation.runtime import paging
from envisolation.runtime.api import ApiError, Gone, NotLeading, ObjectRef
from envisolation.runtime.config import load_config, ssl_context
from envisolation.runtime.events import event_body
from envisolation.runtime.metrics import API_ERRORS, API_WRITES
from envisolation.runtime.throttle import AdaptiveLimit, Throttled, send
from envisolation.spec import constants as c
from envisolation.spec.kinds import PolicyDict, StatusDict

APPLY = "application/apply-patch+yaml"
JSON = "application/json"
# Client settings, in one place, each with its reason:
CONNECT_TIMEOUT = 10.0  # seconds to open a connection: a dead endpoint is noticed soon
CALL_TIMEOUT = 30.0  # seconds to read the answer to a write: a frozen server frees the slot
LIST_TIMEOUT = 120.0  # seconds to read one page of a LIST (large objects, a busy server)
CONNECTIONS = 16  # concurrent API calls at most (fewer while throttled: throttle.py)
USER_AGENT = f"envisolation/{__version__}"  # named as what it is in audit logs and metrics
JSON_PATCH = "application/json-patch+json"
COORDINATION = "/apis/coordination.k8s.io/v1"


def user_agent(identity: str = "") -> str:
    """`envisolation/<version>`, with the instance's identity when it has one (so the
    audit log tells two replicas apart)."""
    return f"{USER_AGENT} ({identity})" if identity else USER_AGENT


NETWORKING = "/apis/networking.k8s.io/v1"
PATHS = {
    "namespaces": "/api/v1/namespaces",
    "networkpolicies": f"{NETWORKING}/networkpolicies",
    "environmentisolations": f"/apis/{c.GROUP}/{c.VERSION}/{c.PLURAL}",
    "hostpods": "/api/v1/pods",  # with HOST_NETWORK: only the pods NetworkPolicy cannot isolate
}
HOST_NETWORK = {"fieldSelector": "spec.hostNetwork=true"}


class Kube:
    """Writes, LISTs, status and Events (the lister, writer and reporter sides of api.py)."""

    def __init__(self, cfg: client.Configuration | None = None, identity: str = "") -> None:
        cfg = cfg or load_config()
        self._cfg = cfg
        self._base = str(cfg.host).rstrip("/")
        self._ssl = ssl_context(cfg)
        self.user_agent = user_agent(identity)
        # Asked before every write (leader election's may_write); None: always allowed.
        self.gate: Callable[[], bool] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.limit = AdaptiveLimit(CONNECTIONS)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

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

    async def request(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
        timeout: float = CALL_TIMEOUT,
        gated: bool = False,
        adaptive: bool = True,
    ) -> Any:
        """One API call; a 429 is sent again after its Retry-After (throttle.py).

        `adaptive=False`: neither limited nor retried (the Lease calls)."""

        def call() -> Awaitable[Any]:
            return self._once(verb, method, path, params, body, content_type, timeout, gated)

        return await (send(self.limit, call) if adaptive else call())

    async def _once(
        self,
        verb: str,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        content_type: str,
        timeout: float,
        gated: bool,
    ) -> Any:
        headers = self._auth()
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"))
            headers["Content-Type"] = content_type
        if gated and self.gate is not None and not self.gate():
            raise NotLeading  # checked last, right before the request goes out
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
                if resp.status == 429:
                    raise Throttled(
                        _message(text, resp.reason or ""), resp.headers.get("Retry-After")
                    )
                if resp.status >= 400:
                    API_ERRORS.labels(verb, str(resp.status)).inc()
                    cls = Gone if resp.status == 410 else ApiError
                    raise cls(resp.status, _message(text, resp.reason or ""))
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            API_ERRORS.labels(verb, "connection").inc()
            raise ApiError(0, f"connection failed: {type(e).__name__}: {e}") from e
        return json.loads(text) if text else {}

    async def list_each(
        self,
        resource: str,
        each: Callable[[Mapping[str, Any]], object],
        namespace: str = "",
        label_selector: str = "",
    ) -> str:
        """Hand every object of a LIST (cluster-wide, or of one namespace's policies) to
        `each`; returns its resourceVersion (paging.py: pages overlap with the digest).

        A continue token that expired mid-listing raises Gone: list again from the start.
        """
        path = self._policy_path(namespace) if namespace else PATHS[resource]
        selector = dict(HOST_NETWORK) if resource == "hostpods" else {}
        if label_selector:
            selector["labelSelector"] = label_selector
        return await paging.list_each(self._pages_of(path), selector, each)

    def _pages_of(self, path: str) -> paging.GetPage:
        """The GET of one LIST page of `path` (paging.py adds limit and continue)."""

        def get(params: Mapping[str, str]) -> Awaitable[Mapping[str, Any]]:
            return self.request("list", "GET", path, params=params, timeout=LIST_TIMEOUT)

        return get

    @staticmethod
    def _policy_path(namespace: str, name: str = "") -> str:
        path = f"{NETWORKING}/namespaces/{quote(namespace, safe='')}/networkpolicies"
        return f"{path}/{quote(name, safe='')}" if name else path

    async def apply_policy(self, policy: PolicyDict) -> Mapping[str, Any]:
        """Server-side apply, forcing: the object is named and labelled as ours."""
        meta = policy["metadata"]
        out: Mapping[str, Any] = await self.request(
            "apply",
            "PATCH",
            self._policy_path(meta["namespace"], meta["name"]),
            params={"fieldManager": c.FIELD_MANAGER, "force": "true"},
            body=policy,
            content_type=APPLY,
            gated=True,
        )
        API_WRITES.labels("apply").inc()
        return out

    async def replace_policy(self, policy: PolicyDict, resource_version: str) -> Mapping[str, Any]:
        """PUT the whole object: drops fields other managers hold, which apply cannot."""
        meta = policy["metadata"]
        body: dict[str, Any] = {**policy, "metadata": {**meta, "resourceVersion": resource_version}}
        out: Mapping[str, Any] = await self.request(
            "replace",
            "PUT",
            self._policy_path(meta["namespace"], meta["name"]),
            params={"fieldManager": c.FIELD_MANAGER},
            body=body,
            gated=True,
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
            await self.request(
                "delete", "DELETE", self._policy_path(namespace, name), body=body, gated=True
            )
        except ApiError as e:
            if e.status != 404:
                raise
        API_WRITES.labels("delete").inc()

    async def set_finalizers(self, name: str, finalizers: list[str], resource_version: str) -> None:
        """Replace an EnvironmentIsolation's finalizers, if it is still at that version."""
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
        ]
        path = f"/apis/{c.GROUP}/{c.VERSION}/{c.PLURAL}/{quote(name, safe='')}"
        await self.request("patch", "PATCH", path, body=patch, content_type=JSON_PATCH, gated=True)
        API_WRITES.labels("finalizer").inc()

    async def apply_status(self, name: str, status: StatusDict) -> None:
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND,
            "metadata": {"name": name},
            "status": status,
        }
        path = f"/apis/{c.GROUP}/{c.VERSION}/{c.PLURAL}/{quote(name, safe='')}/status"
        try:
            await self.request(
                "patch",
                "PATCH",
                path,
                params={"fieldManager": c.FIELD_MANAGER, "force": "true"},
                body=body,
                content_type=APPLY,
                gated=True,
            )
        except ApiError as e:
            if e.status != 404:  # deleted meanwhile: nothing to report on
                raise
        API_WRITES.labels("status").inc()

    async def list_for_verify(self, pods: bool = False) -> list[Mapping[str, Any]]:
        """EnvironmentIsolations, Namespaces and NetworkPolicies (and Pods), as plain objects."""
        out: list[Mapping[str, Any]] = []
        kinds: list[tuple[str, str, dict[str, str]]] = [
            (c.KIND, f"/apis/{c.GROUP}/{c.VERSION}/{c.PLURAL}", {}),
            ("Namespace", PATHS["namespaces"], {}),
            ("NetworkPolicy", PATHS["networkpolicies"], {}),
        ]
        if pods:  # for the CLI (explain), never on the operator's hot path
            kinds.append(("Pod", "/api/v1/pods", {}))
        else:  # verify: only the pods NetworkPolicy cannot isolate, filtered by the server
            kinds.append(("Pod", PATHS["hostpods"], HOST_NETWORK))
        for kind, path, selector in kinds:

            def keep(obj: Mapping[str, Any], kind: str = kind) -> None:
                out.append({**obj, "kind": kind})

            await paging.list_each(self._pages_of(path), selector, keep)
        return out

    async def post_event(
        self, ref: ObjectRef, reason: str, message: str, warning: bool = False
    ) -> None:
        """One core/v1 Event; failures are swallowed, an Event is never worth a retry loop."""
        body = event_body(ref, reason, message, warning)
        ns = body["metadata"]["namespace"]
        try:
            await self.request(
                "create",
                "POST",
                f"/api/v1/namespaces/{quote(ns, safe='')}/events",
                body=body,
                gated=True,
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
