"""What `envisolation reachability` says of the lab's live state, and packets compared to it.

The state is read as a user would read it (`kubectl get namespaces,pods,networkpolicies -A
-o json`), fed to the CLI (`envisolation reachability -o json`), and each probe's verdict
is looked up in its rows: a pod is `ns/name[Pod]` (the lab's pods have no owner), an
external address is in one of the `first-last[External]` ranges.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.dataplane.lab import OPEN, REFUSED, TIMEOUT, Probe

ROOT = Path(__file__).resolve().parents[2]
Ranges = dict[str, list[tuple[int, int]]] | None  # None: every protocol and port


def parse_conn(text: str) -> Ranges:
    """`TCP 80,8443,UDP 53` -> {"TCP": [(80, 80), (8443, 8443)], "UDP": [(53, 53)]}."""
    if text == "All Connections":
        return None
    out: dict[str, list[tuple[int, int]]] = {}
    proto = ""
    for raw in text.split(","):
        tok = raw.strip()
        if " " in tok:
            proto, tok = tok.split(" ", 1)
        lo, _, hi = tok.partition("-")
        out.setdefault(proto, []).append((int(lo), int(hi or lo)))
    return out


def _covers(ranges: Ranges, protocol: str, port: int) -> bool:
    if ranges is None:
        return True
    return any(lo <= port <= hi for lo, hi in ranges.get(protocol, ()))


def _range(name: str) -> tuple[int, int] | None:
    if not name.endswith("[External]"):
        return None
    first, last = name.removesuffix("[External]").split("-")
    return int(ipaddress.IPv4Address(first)), int(ipaddress.IPv4Address(last))


@dataclass
class Expected:
    rows: list[dict[str, str]]
    state: list[dict[str, Any]]

    def _name(self, key: str, ip: str, side: str) -> list[str]:
        if not key.startswith("ext/"):
            return [f"{key}[Pod]"]
        addr = int(ipaddress.IPv4Address(ip))
        names = {r[side] for r in self.rows}
        return [n for n in names if (rg := _range(n)) and rg[0] <= addr <= rg[1]]

    def allows(self, p: Probe) -> bool:
        srcs = self._name(p.src.key, p.src.ip, "src")
        dsts = self._name(p.dst.key, p.dst.ip, "dst")
        return any(
            r["src"] in srcs
            and r["dst"] in dsts
            and _covers(parse_conn(r["conn"]), p.protocol, p.port)
            for r in self.rows
        )

    def policies_of(self, namespace: str) -> list[str]:
        return sorted(
            o["metadata"]["name"]
            for o in self.state
            if o.get("kind") == "NetworkPolicy" and o["metadata"]["namespace"] == namespace
        )


def expected(kubectl: Any, work: Path) -> Expected:
    state = kubectl.json("get", "namespaces,pods,networkpolicies", "-A")
    items = [
        {k: v for k, v in o.items() if k != "status" or o.get("kind") == "Pod"}
        for o in state["items"]
    ]
    for o in items:
        o["metadata"].pop("managedFields", None)
    dump = work / "state.json"
    dump.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    res = subprocess.run(
        [sys.executable, "-m", "envisolation", "reachability", "-o", "json", str(dump)],
        capture_output=True, text=True, check=False,
        env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    if res.returncode != 0:
        raise AssertionError(f"envisolation reachability failed:\n{res.stderr}")
    return Expected(json.loads(res.stdout), items)


def describe(p: Probe, want: Expected, said: str, got: str) -> str:
    """One probe with what a failure report needs: pair, addresses, port, verdicts, policies."""
    ns = {e.key.split("/")[0] for e in (p.src, p.dst) if e.is_pod}
    pols = {n: want.policies_of(n) for n in sorted(ns)}
    return (f"{p.src.key} ({p.src.ip}) -> {p.dst.key} ({p.dst.ip}) {p.protocol}/{p.port}: "
            f"{said}, packets: {got}; policies: {pols}")  # fmt: skip


def mismatches(probes: Sequence[Probe], observed: Sequence[str], want: Expected) -> list[str]:
    """One line per probe whose packet verdict differs from reachability's, with context."""
    out = []
    for p, got in zip(probes, observed, strict=True):
        allowed = want.allows(p)
        if (got == OPEN) == allowed and got in (OPEN, REFUSED, TIMEOUT):
            continue
        out.append(
            describe(p, want, f"reachability says {'allowed' if allowed else 'denied'}", got)
        )
    return out
