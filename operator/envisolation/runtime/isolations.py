"""The EnvironmentIsolations as Kopf's index last delivered them, each parsed once.

Kopf hands over its index (complete before any handler runs); a spec is parsed once per
(uid, generation, deleting) and an invalid one is kept as its InvalidSpec, so a pass
never parses twice and an invalid spec fails closed (its policies stay as they are).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping

from envisolation.spec.model import EnvironmentIsolation, InvalidSpec, IsolationRecord


class Isolations:
    def __init__(self) -> None:
        self._records: Mapping[str, Collection[IsolationRecord]] = {}
        self._parsed: dict[tuple[str, int, bool], EnvironmentIsolation | InvalidSpec] = {}
        self._seen: dict[str, tuple[str, int, bool]] = {}
        self.bound = asyncio.Event()

    def bind(self, records: Mapping[str, Collection[IsolationRecord]]) -> None:
        """Hand over Kopf's index of EnvironmentIsolations."""
        self._records = records
        self.bound.set()

    def changed(self, event: str | None, record: IsolationRecord) -> bool:
        """Does this event bring a new spec (uid, generation) or a deletion?"""
        if event == "DELETED":
            self._seen.pop(record.name, None)
            return True
        before = self._seen.get(record.name)
        self._seen[record.name] = record.key
        return before != record.key

    def records(self) -> list[IsolationRecord]:
        return [r for store in self._records.values() for r in store]

    def parse(self, record: IsolationRecord) -> EnvironmentIsolation | InvalidSpec:
        key = record.key
        if key not in self._parsed:
            try:
                self._parsed[key] = record.parse()
            except InvalidSpec as e:
                self._parsed[key] = e
        return self._parsed[key]

    def valid(self) -> list[EnvironmentIsolation]:
        """The isolations whose spec parses."""
        return [
            iso for rec in self.records() if not isinstance(iso := self.parse(rec), InvalidSpec)
        ]
