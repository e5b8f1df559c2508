"""Exposure monitoring over the controller's in-memory view (no API call, no Kopf).

The controller hands it the namespaces' outcomes and the indexes; it answers which
undeclared cross-segment paths exist per isolation, which of them are new since the last
look (for one Event each), and keeps the exposure metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from envisolation.analysis.exposure import Exposure, Member, SeenPolicy, find
from envisolation.analysis.reachability import Policy, parse_policy
from envisolation.analysis.verify import OWNED
from envisolation.policy.conditions import Outcome
from envisolation.policy.plan import LivePolicy
from envisolation.runtime.metrics import EXPOSURES
from envisolation.spec.kinds import PolicySpecDict
from envisolation.spec.model import NamespaceFacts


class ExposureMonitor:
    def __init__(self) -> None:
        self.exposures: dict[str, list[Exposure]] = {}
        self._parsed: dict[int, tuple[PolicySpecDict, Policy]] = {}

    def _as_policy(self, p: LivePolicy) -> Policy:
        """Parsed for analysis; equal specs are one shared object, so parse each once."""
        key = id(p.spec)
        cached = self._parsed.get(key)
        if cached is None or cached[0] is not p.spec:
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            body = {"metadata": {"namespace": "", "name": ""}, "spec": p.spec}
            cached = (p.spec, parse_policy(body))
            self._parsed[key] = cached
        return replace(cached[1], namespace=p.namespace, name=p.name)

    def analyse(
        self,
        outcomes: Mapping[str, Outcome],
        namespaces: Mapping[str, NamespaceFacts],
        managed: Mapping[str, Mapping[str, LivePolicy]],
        foreign: Mapping[str, Mapping[str, SeenPolicy]],
    ) -> dict[str, list[Exposure]]:
        """Exposures per isolation."""
        members: dict[str, list[Member]] = {}
        for ns, o in outcomes.items():
            d = o.decision
            facts = namespaces.get(ns)
            if d.owner and d.segment and d.state in OWNED and facts is not None:
                members.setdefault(d.owner, []).append(Member(ns, facts.label_map, d.segment))
        out: dict[str, list[Exposure]] = {}
        for iso, mine in members.items():
            theirs = [fp for m in mine for fp in foreign.get(m.name, {}).values()]
            if not theirs:  # only a policy the operator did not write can expose a path
                out[iso] = []
                continue
            policies: list[Policy] = [fp.policy for fp in theirs]
            ours: set[tuple[str, str]] = set()
            for m in mine:
                for lp in managed.get(m.name, {}).values():
                    policies.append(self._as_policy(lp))
                    ours.add((lp.namespace, lp.name))
            out[iso] = find(mine, policies, ours)
        return out

    def update(
        self, found: dict[str, list[Exposure]], isolations: Iterable[str]
    ) -> tuple[bool, list[tuple[str, Exposure]]]:
        """Keep `found`; say whether anything changed, and which exposures are new."""
        for name in isolations:
            found.setdefault(name, [])
        before = {iso: {e.key for e in es} for iso, es in self.exposures.items()}
        changed = found != self.exposures
        self.exposures = found
        EXPOSURES.clear()
        new: list[tuple[str, Exposure]] = []
        for iso, exposures in found.items():
            pairs: dict[tuple[str, str], int] = {}
            for e in exposures:
                k = (e.source_segment, e.destination_segment)
                pairs[k] = pairs.get(k, 0) + 1
                if e.key not in before.get(iso, set()):
                    new.append((iso, e))
            for (src, dst), n in pairs.items():
                EXPOSURES.labels(iso, src, dst).set(n)
        return changed, new
