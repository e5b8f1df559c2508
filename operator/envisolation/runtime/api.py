"""What the runtime's parts need of the Kubernetes API: errors, references and Protocols.

The controller's collaborators are written against these small interfaces, not against
a client: `client.Kube` (aiohttp) implements the lister, writer and reporter sides,
`watch.WatchClient` (the official client, in threads) the watcher side, and a test can
hand any of them a fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from envisolation.spec.kinds import PolicyDict, StatusDict

WATCHED = ("namespaces", "networkpolicies")  # the many objects: listed and watched by us

Deliver = Callable[[str, Mapping[str, Any]], None]  # (event type, object), on the loop


class ApiError(Exception):
    """An API call failed; `transient` says whether a retry can fix it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.transient = status == 0 or status in (409, 429) or status >= 500 or status == 403


class Gone(ApiError):
    """410 Gone: the watch's resourceVersion was compacted away; only a relist helps."""


class NotLeading(ApiError):
    """A write refused before it was sent: this instance does not hold the Lease."""

    def __init__(self) -> None:
        super().__init__(0, "not the leader: this instance may not write")
        self.transient = False


@dataclass(frozen=True)
class ObjectRef:
    """What an Event is about."""

    kind: str
    name: str
    uid: str = ""
    api_version: str = "v1"
    namespace: str = ""


class Lister(Protocol):
    async def list_each(
        self,
        resource: str,
        each: Callable[[Mapping[str, Any]], object],
        namespace: str = "",
        label_selector: str = "",
    ) -> str:
        """Hand every object of a LIST to `each`; return the listing's resourceVersion."""
        ...


class Watcher(Protocol):
    async def watch(self, resource: str, resource_version: str, deliver: Deliver) -> None:
        """One watch request from `resource_version` until the server ends it."""
        ...


class PolicyApi(Protocol):
    async def apply_policy(self, policy: PolicyDict) -> Mapping[str, Any]: ...
    async def replace_policy(
        self, policy: PolicyDict, resource_version: str
    ) -> Mapping[str, Any]: ...
    async def delete_policy(
        self, namespace: str, name: str, uid: str, resource_version: str
    ) -> None: ...


class EventApi(Protocol):
    async def post_event(
        self, ref: ObjectRef, reason: str, message: str, warning: bool = False
    ) -> None: ...


class StatusApi(Protocol):
    async def apply_status(self, name: str, status: StatusDict) -> None: ...


class FinalizerApi(Protocol):
    async def set_finalizers(
        self, name: str, finalizers: list[str], resource_version: str
    ) -> None: ...
