"""The invariant I, checked against what the API server holds (one LIST of everything).

I = every namespace the spec manages holds exactly its rendered policy set (nothing
missing, nothing extra, every spec and label as rendered), the operator wrote no Namespace,
and no two namespaces in different segments are connected unless the spec allows it
(exposure analysis over every stored policy, the reachability engine's policy model).
The expected set comes twice: from the pure core (decide/render, exact specs; the golden
tests pin it), and from `independent`, a small computation from the spec alone written
here (which policies, by name, and the default-deny's own spec), so that a bug shared by
the core and its goldens is still caught. Every namespace that ever had a segment in a
scenario (`EVER`) is checked, also after it left: one that no longer carries the label
must hold no policy of a live isolation.
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
from tests.chaos.conftest import EVER, Audit

CTX = RenderContext(operator_namespace="envisolation-system")


@dataclass
class Snapshot:
    uids: dict[tuple[str, str], str]  # managed policies in scope -> uid
    exposed: list[str]  # "iso: a->b" cells of the segment matrix that are exposed
    policies: int


def world(kubectl: Kubectl) -> list[dict[str, Any]]:
    items = kubectl.json("get", "namespaces,networkpolicies,environmentisolations", "-A")["items"]
    return list(items)


NEVER = ("kube-node-lease", "kube-public", "kube-system", "envisolation-system")


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": key not in labels or labels[key] not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]  # fmt: skip
        if not ok:
            return False
    return True


def independent(cr: dict[str, Any], ns: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The policies one isolation keeps in one namespace, from its spec alone: name ->
    the spec when this computation knows it (the default-deny), else {}. None when the
    operator must leave the namespace as it is (terminating, Audit, Off)."""
    spec = cr.get("spec") or {}
    meta = ns["metadata"]
    labels = meta.get("labels") or {}
    if meta.get("deletionTimestamp"):
        return None
    value = labels.get(spec.get("namespaceLabel", "environment"))
    seg = next((s for s in spec.get("segments") or [] if s["name"] == value), None)
    if (
        seg is None
        or meta["name"] in NEVER
        or meta["name"] in (spec.get("excludeNamespaces") or [])
    ):
        return {}
    if not _matches(seg.get("namespaceSelector") or {}, labels):
        return {}
    if (seg.get("enforcement") or spec.get("enforcement") or "Enforce") != "Enforce":
        return None
    isolate = spec.get("isolate") or ["Ingress", "Egress"]
    out: dict[str, dict[str, Any]] = {
        "envisolation-default-deny": {"podSelector": {}, "policyTypes": isolate}}  # fmt: skip
    if spec.get("sameSegment", "Allow") != "Deny":
        out["envisolation-same-segment"] = {}
    if (spec.get("dns") or {}).get("enabled", True) and "Egress" in isolate:
        out["envisolation-dns"] = {}
    for rule in spec.get("allow") or []:
        if not rule.get("segments") or seg["name"] in rule["segments"]:
            out[f"envisolation-allow-{rule['name']}"] = {}
    return out


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
    # the same, from the spec alone, where one live isolation owns the label
    crs_here = [o for o in objects if o.get("kind") == "EnvironmentIsolation"
                and (o.get("spec") or {}).get("namespaceLabel") == label
                and o["metadata"]["name"] in known]  # fmt: skip
    namespaces = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Namespace"}
    if len(crs_here) == 1:
        (cr,) = crs_here
        for name in sorted(set(scope) | (EVER.get(label, set()) & set(namespaces))):
            want = independent(cr, namespaces[name])
            if want is None:
                continue
            held = {n: p for n, p in live_any(objects, name).items()
                    if (p["metadata"].get("labels") or {}).get("envisolation.io/isolation") == cr["metadata"]["name"]}  # fmt: skip
            if set(held) != set(want):
                out.append(
                    f"{name} (independent): holds {sorted(held)}, the spec says {sorted(want)}"
                )
            for n, s in want.items():
                if s and n in held and canonical(held[n].get("spec") or {}) != canonical(s):
                    out.append(
                        f"{name} (independent): {n} has spec {held[n].get('spec')}, want {s}"
                    )
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


def live_any(objects: list[dict[str, Any]], namespace: str) -> dict[str, dict[str, Any]]:
    """The operator's policies (by its field manager) in a namespace, in scope or not."""
    return {o["metadata"]["name"]: o for o in objects
            if o.get("kind") == "NetworkPolicy" and o["metadata"].get("namespace") == namespace
            and owned(o["metadata"])}  # fmt: skip


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
