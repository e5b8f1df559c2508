"""Typed, frozen views of an EnvironmentIsolation and of the namespaces it governs.

`EnvironmentIsolation.from_body` parses and validates a CR body (parse.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from envisolation.spec import constants as c
from envisolation.spec.selectors import LabelSelector


class InvalidSpec(ValueError):
    """The spec cannot be rendered; the message starts with the field path."""


class Enforcement(StrEnum):
    ENFORCE = "Enforce"
    AUDIT = "Audit"
    OFF = "Off"


@dataclass(frozen=True)
class IPBlock:
    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True)
class Peer:
    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None
    segment: str | None = None


@dataclass(frozen=True)
class Port:
    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True)
class TrafficRule:
    """One ingress or egress rule; `peers is None` means "any peer", as in NetworkPolicy."""

    peers: tuple[Peer, ...] | None
    ports: tuple[Port, ...] | None


@dataclass(frozen=True)
class AllowRule:
    name: str
    segments: tuple[str, ...]
    pod_selector: LabelSelector
    ingress: tuple[TrafficRule, ...] | None
    egress: tuple[TrafficRule, ...] | None

    @property
    def policy_name(self) -> str:
        return c.POLICY_ALLOW_PREFIX + self.name


@dataclass(frozen=True)
class Segment:
    name: str
    enforcement: Enforcement
    namespace_selector: LabelSelector | None = None


DEFAULT_DNS_SELECTOR = LabelSelector(match_labels=c.DEFAULT_DNS_POD_LABELS)
DEFAULT_DNS_PORTS = (Port("UDP", 53), Port("TCP", 53))


@dataclass(frozen=True)
class Dns:
    enabled: bool = True
    namespace: str = c.DEFAULT_DNS_NAMESPACE
    pod_selector: LabelSelector = DEFAULT_DNS_SELECTOR
    ports: tuple[Port, ...] = DEFAULT_DNS_PORTS


@dataclass(frozen=True)
class EnvironmentIsolation:
    name: str
    namespace_label: str
    enforcement: Enforcement
    isolate: tuple[str, ...]
    segments: tuple[Segment, ...]
    same_segment: bool
    dns: Dns
    allow: tuple[AllowRule, ...]
    exclude_namespaces: frozenset[str]
    deletion_policy: str
    uid: str = ""
    generation: int = 0
    created: str = ""
    deleting: bool = False

    def segment(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    @property
    def age_key(self) -> tuple[str, str]:
        """Older first: the owner of a namespace claimed twice is the first in this order."""
        return (self.created or "9999", self.name)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> EnvironmentIsolation:
        """Parse and validate a CR body (raises InvalidSpec naming the field)."""
        from envisolation.spec.parse import parse_isolation  # parse.py builds this class

        return parse_isolation(body)


@dataclass(frozen=True)
class NamespaceFacts:
    name: str
    labels: tuple[tuple[str, str], ...]
    terminating: bool = False

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> NamespaceFacts:
        meta = body.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        name = str(meta.get("name", ""))
        labels.setdefault(c.NAMESPACE_NAME_LABEL, name)
        phase = (body.get("status") or {}).get("phase")
        terminating = phase == "Terminating" or bool(meta.get("deletionTimestamp"))
        return cls(name, tuple(sorted((str(k), str(v)) for k, v in labels.items())), terminating)


@dataclass(frozen=True)
class IsolationRecord:
    """An EnvironmentIsolation as the watch last delivered it, unparsed (for the index)."""

    name: str
    uid: str
    generation: int
    deleting: bool
    body: Mapping[str, Any]  # metadata and spec, for EnvironmentIsolation.from_body
    status: Mapping[str, Any]
    finalizers: tuple[str, ...] = ()
    resource_version: str = ""

    @property
    def deletion_policy(self) -> str:
        """As written (the CRD's enum and default make it Orphan or Delete)."""
        return str((self.body.get("spec") or {}).get("deletionPolicy") or "Orphan")

    @property
    def key(self) -> tuple[str, int, bool]:
        return (self.uid, self.generation, self.deleting)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> IsolationRecord:
        meta = dict(body.get("metadata") or {})
        keep = {k: meta[k] for k in ("name", "uid", "generation", "creationTimestamp",
                                      "deletionTimestamp") if k in meta}  # fmt: skip
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation", 0) or 0),
            deleting=bool(meta.get("deletionTimestamp")),
            body={"metadata": keep, "spec": body.get("spec") or {}},
            status=dict(body.get("status") or {}),
            finalizers=tuple(str(f) for f in meta.get("finalizers") or ()),
            resource_version=str(meta.get("resourceVersion", "")),
        )

    def parse(self) -> EnvironmentIsolation:
        return EnvironmentIsolation.from_body(self.body)
