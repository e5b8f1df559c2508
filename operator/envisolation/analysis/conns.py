"""Sets of connections: per protocol (SCTP, TCP, UDP), merged ranges of ports 1-65535."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PROTOCOLS = ("SCTP", "TCP", "UDP")  # string order, as printed
MIN_PORT, MAX_PORT = 1, 65535
Ranges = tuple[tuple[int, int], ...]


def merge(ranges: Iterable[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def intersect(a: Ranges, b: Ranges) -> Ranges:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


FULL: Ranges = ((MIN_PORT, MAX_PORT),)


@dataclass(frozen=True)
class Conns:
    """Allowed connections; `ports[i]` are the ranges of PROTOCOLS[i]."""

    ports: tuple[Ranges, Ranges, Ranges] = ((), (), ())

    @classmethod
    def of(cls, protocol: str, lo: int | None = None, hi: int | None = None) -> Conns:
        """All ports of `protocol`, or port `lo`, or the range `lo`-`hi`."""
        ports: list[Ranges] = [(), (), ()]
        first = MIN_PORT if lo is None else lo
        last = (MAX_PORT if lo is None else lo) if hi is None else hi
        ports[PROTOCOLS.index(protocol)] = ((first, last),)
        return cls((ports[0], ports[1], ports[2]))

    def __or__(self, other: Conns) -> Conns:
        if other is NONE or self is ALL:
            return self
        if self is NONE or other is ALL:
            return other
        a, b = self.ports, other.ports
        return Conns((merge(a[0] + b[0]), merge(a[1] + b[1]), merge(a[2] + b[2])))

    def __and__(self, other: Conns) -> Conns:
        if self is ALL:
            return other
        if other is ALL:
            return self
        a, b = self.ports, other.ports
        return Conns((intersect(a[0], b[0]), intersect(a[1], b[1]), intersect(a[2], b[2])))

    def __bool__(self) -> bool:
        return any(self.ports)

    def __le__(self, other: Conns) -> bool:
        return (self & other) == self

    def __sub__(self, other: Conns) -> Conns:
        """What self allows and other does not."""
        out: list[Ranges] = []
        for mine, theirs in zip(self.ports, other.ports, strict=True):
            holes = merge(theirs)
            rest: list[tuple[int, int]] = []
            for lo, hi in mine:
                cur = lo
                for hlo, hhi in holes:
                    if hhi < cur or hlo > hi:
                        continue
                    if hlo > cur:
                        rest.append((cur, hlo - 1))
                    cur = max(cur, hhi + 1)
                if cur <= hi:
                    rest.append((cur, hi))
            out.append(tuple(rest))
        return Conns((out[0], out[1], out[2]))

    @property
    def is_all(self) -> bool:
        return all(p == FULL for p in self.ports)

    def __str__(self) -> str:
        if self.is_all:
            return "All Connections"
        if not self:
            return "No Connections"
        parts = []
        for proto, ranges in zip(PROTOCOLS, self.ports, strict=True):
            if ranges:
                text = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)
                parts.append(f"{proto} {text}")
        return ",".join(parts)


ALL = Conns((FULL, FULL, FULL))
NONE = Conns()
