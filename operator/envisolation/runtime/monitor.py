"""Exposure monitoring over the controller's in-memory view (no API call, no Kopf).

Policies the operator did not write can reopen a path between segments. After a pass
or a change to such a policy, at most every EXPOSURE_INTERVAL_SECONDS and only once
every managed namespace's policies are known, the monitor finds the undeclared
cross-segment paths per isolation, posts one Event per new one, keeps the exposure
metric, and warns once about each policy that carries our label without being ours.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import replace

import structlog

from envisolation.analysis.exposure import (
    DEFAULT_WIDE,
    Exposure,
    Member,
    SeenPolicy,
    WidePrefixes,
    find,
)
from envisolation.analysis.netpol import Policy, parse_policy
from envisolation.analysis.verify import OWNED
from envisolation.policy.conditions import Outcome
from envisolation.policy.plan import LivePolicy
from envisolation.runtime.api import ObjectRef
from envisolation.runtime.events import EventQueue
from envisolation.runtime.hostpods import HostPods
from envisolation.runtime.metrics import EXPOSURES, NOT_ISOLATABLE
from envisolation.runtime.view import ClusterView
from envisolation.spec import constants as c
from envisolation.spec.kinds import PolicySpecDict
from envisolation.spec.model import NamespaceFacts

log = structlog.get_logger("envisolation.monitor")
EXPOSURE_INTERVAL_SECONDS = 2.0  # exposure analysis runs at most this often


class ExposureMonitor:
    def __init__(self, events: EventQueue, wide_prefixes: WidePrefixes = DEFAULT_WIDE) -> None:
        self.wide_prefixes = wide_prefixes
        self.exposures: dict[str, list[Exposure]] = {}
        self.not_isolatable: dict[str, list[str]] = {}  # isolation -> `segment: ns/pod`
        self.host_pods: HostPods | None = None  # hostpods.py, when the controller runs it
        self._parsed: dict[int, tuple[PolicySpecDict, Policy]] = {}
        self._events = events
        self.due = True
        self._last = 0.0
        self._impersonators: dict[tuple[str, str], str] = {}  # reported already

    def next_at(self) -> list[float]:
        """When the loop must come back to analyse (empty: nothing due)."""
        return [self._last + EXPOSURE_INTERVAL_SECONDS] if self.due else []

    def maybe_analyse(
        self, outcomes: Mapping[str, Outcome], view: ClusterView, isolations: Iterable[str]
    ) -> bool:
        """Analyse if due; returns whether the exposures changed (the status must follow)."""
        if not self.due or view.unfetched or not view.foreign_listed:
            return False  # not before every managed namespace's policies are known
        if time.monotonic() - self._last < EXPOSURE_INTERVAL_SECONDS:
            return False
        self.due = False
        self._last = time.monotonic()
        found = self.analyse(outcomes, view.namespaces, view.managed, view.foreign)
        isolations = list(isolations)
        changed, new = self.update(found, isolations)
        changed = self._host_network(outcomes, isolations) or changed
        self._report_impersonators(outcomes, view.impersonating)
        for iso, e in new:
            where = e.destination if e.destination_segment else e.source
            log.warning("cross-segment exposure", isolation=iso, namespace=where, exposure=str(e))
            self._events.emit(
                ObjectRef("Namespace", where),
                "CrossSegmentExposure",
                f"{e} (EnvironmentIsolation {iso} does not declare this path)",
                warning=True,
            )
        return changed

    def _host_network(self, outcomes: Mapping[str, Outcome], isolations: Iterable[str]) -> bool:
        """Pods NetworkPolicy cannot isolate, per isolation; whether that changed."""
        members: dict[str, dict[str, str]] = {name: {} for name in isolations}
        for ns, o in outcomes.items():
            d = o.decision
            if d.owner and d.segment and d.state in OWNED:
                members.setdefault(d.owner, {})[ns] = d.segment
        found = {
            iso: (self.host_pods.in_namespaces(nss) if self.host_pods else [])
            for iso, nss in members.items()
        }
        changed = found != self.not_isolatable
        self.not_isolatable = found
        NOT_ISOLATABLE.clear()
        for iso, pods in found.items():
            NOT_ISOLATABLE.labels(iso).set(len(pods))
        return changed

    def _report_impersonators(
        self, outcomes: Mapping[str, Outcome], impersonating: Mapping[tuple[str, str], str]
    ) -> None:
        """One Warning per policy that carries our label without being ours (never adopted)."""
        # Only where it matters: in namespaces an EnvironmentIsolation manages.
        current = {
            key: uid
            for key, uid in impersonating.items()
            if (o := outcomes.get(key[0])) is not None and o.decision.owner is not None
        }
        for (ns, name), uid in sorted(current.items()):
            if self._impersonators.get((ns, name)) == uid:
                continue
            log.warning("policy carries the operator's label but is not its own",
                        namespace=ns, policy=name)  # fmt: skip
            self._events.emit(
                ObjectRef("Namespace", ns),
                "ImpersonatedPolicy",
                f"NetworkPolicy {ns}/{name} carries the label {c.LABEL_MANAGED_BY}="
                f"{c.MANAGED_BY} but was not written by envisolation; it is analysed like any "
                "other policy and never adopted",
                warning=True,
            )
        self._impersonators = current

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
            out[iso] = find(mine, policies, ours, self.wide_prefixes)
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
