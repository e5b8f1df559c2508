"""Kubernetes label selectors: a frozen value type, matching, and the JSON shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envisolation.spec.kinds import RequirementDict, SelectorDict


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present

    def to_dict(self) -> RequirementDict:
        out: RequirementDict = {"key": self.key, "operator": self.operator}
        if self.operator in ("In", "NotIn"):
            out["values"] = list(self.values)
        return out


@dataclass(frozen=True)
class LabelSelector:
    """matchLabels AND matchExpressions; the empty selector matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )

    def merged(self, other: LabelSelector) -> LabelSelector:
        """Both selectors at once (their conjunction)."""
        labels = dict(self.match_labels)
        labels.update(other.match_labels)
        return LabelSelector(
            tuple(sorted(labels.items())), self.match_expressions + other.match_expressions
        )

    def to_dict(self) -> SelectorDict:
        out: SelectorDict = {}
        if self.match_labels:
            out["matchLabels"] = dict(sorted(self.match_labels))
        if self.match_expressions:
            out["matchExpressions"] = [r.to_dict() for r in self.match_expressions]
        return out
