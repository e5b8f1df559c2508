"""TypedDicts for the JSON shapes the operator reads and writes (NetworkPolicy, status)."""

from __future__ import annotations

from typing import NotRequired, TypedDict


class RequirementDict(TypedDict):
    key: str
    operator: str
    values: NotRequired[list[str]]


class SelectorDict(TypedDict, total=False):
    matchLabels: dict[str, str]
    matchExpressions: list[RequirementDict]


# "except" is a Python keyword; the functional form keeps the JSON key.
IPBlockWithExcept = TypedDict("IPBlockWithExcept", {"cidr": str, "except": list[str]}, total=False)


class PeerDict(TypedDict, total=False):
    podSelector: SelectorDict
    namespaceSelector: SelectorDict
    ipBlock: IPBlockWithExcept


class PortDict(TypedDict, total=False):
    protocol: str
    port: int | str
    endPort: int


IngressRuleDict = TypedDict(
    "IngressRuleDict", {"from": list[PeerDict], "ports": list[PortDict]}, total=False
)


class EgressRuleDict(TypedDict, total=False):
    to: list[PeerDict]
    ports: list[PortDict]


class PolicySpecDict(TypedDict):
    podSelector: SelectorDict
    policyTypes: list[str]
    ingress: NotRequired[list[IngressRuleDict]]
    egress: NotRequired[list[EgressRuleDict]]


class PolicyMetaDict(TypedDict):
    name: str
    namespace: str
    labels: dict[str, str]


class PolicyDict(TypedDict):
    apiVersion: str
    kind: str
    metadata: PolicyMetaDict
    spec: PolicySpecDict


class ConditionDict(TypedDict):
    type: str
    status: str
    reason: str
    message: str
    observedGeneration: int
    lastTransitionTime: str


class SegmentStatusDict(TypedDict, total=False):
    name: str
    enforcement: str
    namespaces: int
    ready: int
    wouldApply: int
    wouldDelete: int


class ConflictDict(TypedDict):
    namespace: str
    isolations: list[str]
    owner: str


class StatusDict(TypedDict, total=False):
    observedGeneration: int
    conditions: list[ConditionDict]
    namespaces: int
    policies: int
    segments: list[SegmentStatusDict]
    segmentNames: str
    conflicts: list[ConflictDict]
    conflictCount: int
    exposures: list[dict[str, str]]
    exposureCount: int
    notIsolatable: list[str]
    notIsolatableCount: int
