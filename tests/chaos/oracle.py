"""The invariant I, checked against what the API server holds (one LIST of everything).

I = every namespace the spec manages holds exactly its rendered policy set (nothing
missing, nothing extra, every spec and label as rendered), the operator wrote no Namespace,
and no two namespaces in different segments are connected unless the spec allows it
(exposure analysis over every stored policy, the reachability engine's policy model).
The expected set comes from the pure core (decide/render), which the golden tests pin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from envisolation.analysis.verify import reports_from_objects
from envisolation.policy.plan import canonical, owned
from envisolation.policy.render import RenderContext, decide
from envisolation.spec.model import EnvironmentIsolation, InvalidSpec, NamespaceFacts
from tests.api.conftest import Kubectl
from tests.chaos.conftest import Audit

CTX = RenderContext(operator_namespace="envisolation-system")


@dataclass
class Snapshot:
    uids: dict[tuple[str, str], str]  # managed policies in scope -> uid
    exposed: list[str]  # "iso: a->b" cells of the segment matrix that are exposed
    policies: int


def world(kubectl: Kubectl) -> list[dict[str, Any]]:
    items = kubectl.json("get", "namespaces,networkpolicies,environmentisolations", "-A")["items"]
    return list(items)


def problems(objects: list[dict[str, Any]], label: str) -> tuple[list[str], Snapshot]:
    isolations: list[EnvironmentIsolation] = []
    for o in objects:
        if o.get("kind") != "EnvironmentIsolation":
            continue
        try:
            isolations.append(EnvironmentIsolation.from_body(o))
        except InvalidSpec:
            continue  # fail closed: an invalid spec changes nothing, so it expects nothing
    known = {i.name for i in isolations if not (i.deleting and i.deletion_policy == "Orphan")}
    scope = {
        o["metadata"]["name"]: NamespaceFacts.from_body(o)
        for o in objects
        if o.get("kind") == "Namespace" and label in (o["metadata"].get("labels") or {})
    }
    live: dict[str, dict[str, dict[str, Any]]] = {}
    for o in objects:
        meta = o.get("metadata") or {}
        if o.get("kind") == "NetworkPolicy" and meta.get("namespace") in scope and owned(meta):
            live.setdefault(meta["namespace"], {})[meta["name"]] = o
    out: list[str] = []
    for name, facts in sorted(scope.items()):
        d = decide(facts, isolations, CTX)
        if d.hands_off:
            continue  # terminating, or audit: the operator must leave it as it is
        want = {p["metadata"]["name"]: p for p in d.desired}
        have = {
            n: p
            for n, p in live.get(name, {}).items()
            if (p["metadata"].get("labels") or {}).get("envisolation.io/isolation") in known
        }
        for n in sorted(set(want) - set(have)):
            out.append(f"{name}: missing {n}")
        for n in sorted(set(have) - set(want)):
            out.append(f"{name}: extra {n}")
        for n in sorted(set(want) & set(have)):
            w, h = want[n], have[n]
            labels = h["metadata"].get("labels") or {}
            if any(labels.get(k) != v for k, v in w["metadata"]["labels"].items()):
                out.append(f"{name}: {n} has labels {labels}")
            if canonical(w["spec"]) != canonical(h.get("spec") or {}):
                out.append(f"{name}: {n} has spec {h.get('spec')}, want {w['spec']}")
    mine = [o for o in objects if o.get("kind") != "EnvironmentIsolation"]
    crs = [
        o
        for o in objects
        if o.get("kind") == "EnvironmentIsolation"
        and (o.get("spec") or {}).get("namespaceLabel") == label
        and o["metadata"]["name"] in {i.name for i in isolations}
    ]
    exposed = []
    for r in reports_from_objects([*crs, *mine], CTX):
        exposed += [f"{r.isolation}: {a}->{b}" for (a, b), v in r.matrix.items() if v == "exposed"]
    uids = {(ns, n): p["metadata"]["uid"] for ns, inner in live.items() for n, p in inner.items()}
    return out, Snapshot(uids, sorted(exposed), len(uids))


def check(
    kubectl: Kubectl,
    audit: Audit,
    label: str,
    allow_exposed: bool = False,
) -> Snapshot:
    """I holds now, or AssertionError naming every violation."""
    found, snap = problems(world(kubectl), label)
    if snap.exposed and not allow_exposed:
        found += [f"exposed {x}" for x in snap.exposed]
    ns_writes = audit.count(resource="namespaces", subresource=None)
    if ns_writes:
        found.append(f"the operator wrote Namespace objects {ns_writes} times")
    if found:
        raise AssertionError("invariant I violated:\n  " + "\n  ".join(found[:40]))
    return snap


def converge(
    kubectl: Kubectl, audit: Audit, label: str, timeout: float = 30.0, allow_exposed: bool = False
) -> tuple[Snapshot, float]:
    """Wait until I holds; returns the snapshot and the seconds it took."""
    t0 = time.monotonic()
    last: AssertionError | None = None
    while time.monotonic() - t0 < timeout:
        try:
            return check(kubectl, audit, label, allow_exposed), round(time.monotonic() - t0, 2)
        except AssertionError as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"I did not hold within {timeout}s") from last
