"""Differential tier: `envisolation reachability` against cyclonus, an independent Go
implementation of NetworkPolicy semantics (github.com/mattfenwick/cyclonus v0.5.6, its
`pkg/matcher`), on generated cluster states.

hack/build-cyclonus-harness builds the harness (hack/cyclonus-harness: the matcher behind
a JSON interface) once into ~/.cache; the tier fails, never skips, when it cannot be
built. Each state (tests/dataplane/states.py, reproducible by number: every selector
operator, named ports that differ from pod to pod, port ranges, ipBlocks with except over
addresses outside the cluster, ingress and egress, implied policyTypes; IPv6 blocks, IPv6
excepts and IPv6 outside addresses too in the `ipv6` states) is written as
manifests for `reachability -o json` and, through `cyclonus_input`, as the harness's
input; every pod pair and pod/external pair is compared on every probed port.

Where cyclonus reads the API differently from Kubernetes, `cyclonus_input` corrects the
input in one place, and `test_the_corrections_follow_kubernetes` shows the Kubernetes rule
each correction restores.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dataplane.states import EXTERNALS, EXTERNALS6, PROBED, State, generate
from tests.dataplane.verdicts import parse_conn

ROOT = Path(__file__).resolve().parents[2]
STATES = int(os.environ.get("ENVISOLATION_DIFFERENTIAL_STATES", "60"))
STATES6 = int(os.environ.get("ENVISOLATION_DIFFERENTIAL_STATES_IPV6", "30"))
TOTALS = {"states": 0, "pairs": 0, "probes": 0, "ipv6_probes": 0, "allowed": 0, "disagreements": 0}


@pytest.fixture(scope="module")
def harness() -> Iterator[Path]:
    res = subprocess.run([str(ROOT / "hack" / "build-cyclonus-harness")], capture_output=True,
                         text=True, check=False)  # fmt: skip
    if res.returncode != 0:
        pytest.fail(f"the cyclonus harness could not be built:\n{res.stderr}", pytrace=False)
    yield Path(res.stdout.strip())
    if TOTALS["states"]:
        print(f"\ndifferential (cyclonus): {TOTALS}", file=sys.stderr)


# -- where cyclonus and Kubernetes part, corrected here and only here ------------------------


def _split_not_in(selector: dict[str, Any] | None) -> list[dict[str, Any] | None]:
    """Selectors equivalent together (their union) to `selector`, as cyclonus reads them.

    Kubernetes: `NotIn` matches an object without the key; cyclonus (pkg/kube
    labelselector.go) does not. A selector with `NotIn(k, V)` is the union of the same
    selector with `DoesNotExist(k)` and with `Exists(k)` + `NotIn(k, V)`, which cyclonus
    reads right. Kubernetes: `matchLabels {k: ""}` needs the key; cyclonus matches objects
    without it, so an `Exists(k)` is added.
    """
    if selector is None:
        return [None]
    base = copy.deepcopy(selector)
    exprs = base.pop("matchExpressions", None) or []
    for k, v in (base.get("matchLabels") or {}).items():
        if v == "":
            exprs.append({"key": k, "operator": "Exists"})
    choices = []
    for e in exprs:
        if e["operator"] == "NotIn":
            choices.append([[{"key": e["key"], "operator": "DoesNotExist"}],
                            [{"key": e["key"], "operator": "Exists"}, e]])  # fmt: skip
        else:
            choices.append([[e]])
    out = []
    for combo in itertools.product(*choices):
        s = copy.deepcopy(base)
        merged = [x for part in combo for x in part]
        if merged:
            s["matchExpressions"] = merged
        out.append(s)
    return out


def _peers(peers: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if peers is None:
        return None
    out = []
    for p in peers:
        if "ipBlock" in p:
            out.append(p)
            continue
        for pod_sel, ns_sel in itertools.product(_split_not_in(p.get("podSelector")),
                                                 _split_not_in(p.get("namespaceSelector"))):  # fmt: skip
            q: dict[str, Any] = {}
            if pod_sel is not None:
                q["podSelector"] = pod_sel
            if ns_sel is not None:
                q["namespaceSelector"] = ns_sel
            out.append(q)
    return out


def cyclonus_input(policies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The policies as cyclonus must read them to apply Kubernetes' semantics.

    - policyTypes made explicit, as the API server defaults them (cyclonus panics without);
    - label selectors rewritten by `_split_not_in` (a policy's podSelector into several
      policies, a peer's selectors into several peers: both are unions in the API).
    """
    out = []
    for pol in policies:
        spec = copy.deepcopy(pol["spec"])
        if not spec.get("policyTypes"):
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        for key, side in (("ingress", "from"), ("egress", "to")):
            for rule in spec.get(key) or []:
                if side in rule:
                    rule[side] = _peers(rule[side])
        for i, sel in enumerate(_split_not_in(spec.get("podSelector") or {})):
            out.append({**pol, "metadata": {**pol["metadata"], "name": f"{pol['metadata']['name']}-{i}"},
                        "spec": {**spec, "podSelector": sel}})  # fmt: skip
    return out


# -- the comparison ---------------------------------------------------------------------------


def pod_ip(i: int) -> str:
    return f"10.0.{i // 250}.{i % 250 + 1}"  # outside every generated ipBlock (198.19.0.0/16)


def manifests(st: State) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": lb}}
                                  for ns, lb in st.namespaces.items()]  # fmt: skip
    for i, (ns, name, labels, ports) in enumerate(st.pods):
        objs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
                     "spec": {"containers": [{"name": "c", "image": "i", "ports": [
                         {"containerPort": p.port, "protocol": p.protocol, **({"name": p.name} if p.name else {})}
                         for p in ports]}]},
                     "status": {"podIP": pod_ip(i), "podIPs": [{"ip": pod_ip(i)}, *(
                         [{"ip": f"fd00:10::{i + 1:x}"}] if st.ipv6 else [])]}})  # fmt: skip
    return objs + st.policies


def harness_input(st: State) -> dict[str, Any]:
    pods = [{"namespace": ns, "name": name, "labels": labels, "ip": pod_ip(i),
             "namespaceLabels": {**st.namespaces[ns], "kubernetes.io/metadata.name": ns},
             "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in ports]}
            for i, (ns, name, labels, ports) in enumerate(st.pods)]  # fmt: skip
    externals = list(EXTERNALS) + (list(EXTERNALS6) if st.ipv6 else [])
    return {"policies": cyclonus_input(st.policies), "pods": pods, "externals": externals,
            "probes": [{"protocol": proto, "port": port} for proto, port in PROBED]}  # fmt: skip


def ours(st: State, tmp_path: Path) -> dict[tuple[str, str], Any]:
    (tmp_path / "state.yaml").write_text(yaml.safe_dump_all(manifests(st)))
    res = subprocess.run([sys.executable, "-m", "envisolation", "reachability", "-o", "json", str(tmp_path)],
                         capture_output=True, text=True, check=False,
                         env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert res.returncode == 0, res.stderr
    return {(r["src"], r["dst"]): parse_conn(r["conn"]) for r in json.loads(res.stdout)}


def _allowed(rows: dict[tuple[str, str], Any], src: str, dst: str, proto: str, port: int) -> bool:
    import ipaddress

    def names(key: str, side: int) -> list[str]:
        if "/" in key:
            return [f"{key}[Pod]"]
        addr = ipaddress.ip_address(key)
        found = []
        for pair in rows:
            n = pair[side]
            if n.endswith("[External]"):
                lo, hi = (ipaddress.ip_address(x) for x in n.removesuffix("[External]").split("-"))
                if lo.version == addr.version and int(lo) <= int(addr) <= int(hi):
                    found.append(n)
        return found

    for s in names(src, 0):
        for d in names(dst, 1):
            ranges = rows.get((s, d), False)
            if ranges is None:
                return True  # All Connections
            if ranges and any(lo <= port <= hi for lo, hi in ranges.get(proto, ())):
                return True
    return False


SEEDS = [(s, False) for s in range(1001, 1001 + STATES)] + [
    (s, True) for s in range(3001, 3001 + STATES6)
]


@pytest.mark.parametrize(
    ("seed", "ipv6"), SEEDS, ids=[f"{s}{'-ipv6' if v else ''}" for s, v in SEEDS]
)
def test_reachability_agrees_with_cyclonus(
    harness: Path, seed: int, ipv6: bool, tmp_path: Path
) -> None:
    st = generate(seed, ipv6)
    res = subprocess.run([str(harness)], input=json.dumps(harness_input(st)), capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    theirs = json.loads(res.stdout)
    rows = ours(st, tmp_path)
    bad = [f"{v['src']} -> {v['dst']} {v['protocol']}/{v['port']}: cyclonus {'allows' if v['allowed'] else 'denies'}, "
           f"reachability {'allows' if not v['allowed'] else 'denies'}"
           for v in theirs if _allowed(rows, v["src"], v["dst"], v["protocol"], v["port"]) != v["allowed"]]  # fmt: skip
    if ipv6:  # the IPv6 outside addresses were probed, both ways
        assert {":" in v["src"] for v in theirs} == {True, False}, "no IPv6 probe"
    TOTALS["states"] += 1
    TOTALS["pairs"] += len({(v["src"], v["dst"]) for v in theirs})
    TOTALS["probes"] += len(theirs)
    TOTALS["ipv6_probes"] += sum(":" in v["src"] or ":" in v["dst"] for v in theirs)
    TOTALS["allowed"] += sum(v["allowed"] for v in theirs)
    TOTALS["disagreements"] += len(bad)
    pods = [(ns, n, lb, [(p.protocol, p.port, p.name) for p in ps]) for ns, n, lb, ps in st.pods]
    assert not bad, (f"state {seed}: {len(bad)} of {len(theirs)} verdicts differ\n" + "\n".join(bad[:30])
                     + f"\nnamespaces {st.namespaces}\npods {pods}\npolicies:\n"
                     + "\n".join(json.dumps(p) for p in st.policies))  # fmt: skip


def test_the_corrections_follow_kubernetes(harness: Path) -> None:
    """NotIn on a missing key, and matchLabels {k: ""}: the Kubernetes rule, through the
    harness, with the correction; and cyclonus's own reading without it."""

    def verdicts(policies: list[dict[str, Any]], correct: bool) -> dict[str, bool]:
        pods = [{"namespace": "a", "name": n, "labels": lb, "ip": f"10.9.0.{i + 1}",
                 "namespaceLabels": {"kubernetes.io/metadata.name": "a"}, "ports": []}
                for i, (n, lb) in enumerate([("client", {"app": "c"}), ("nokey", {}), ("empty", {"tier": ""}),
                                             ("front", {"tier": "front"})])]  # fmt: skip
        pols = cyclonus_input(policies) if correct else [
            {**p, "spec": {**p["spec"], "policyTypes": ["Ingress"]}} for p in policies]  # fmt: skip
        inp = {
            "policies": pols,
            "pods": pods,
            "externals": [],
            "probes": [{"protocol": "TCP", "port": 80}],
        }
        out = subprocess.run(
            [str(harness)], input=json.dumps(inp), capture_output=True, text=True, check=True
        )
        return {
            v["dst"].split("/")[1]: v["allowed"]
            for v in json.loads(out.stdout)
            if v["src"] == "a/client"
        }

    def isolate(selector: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "x", "namespace": "a"},
                 "spec": {"podSelector": selector, "ingress": []}}]  # fmt: skip

    # NotIn(tier, [front]) selects a pod without the key: it is isolated (denied)
    not_in = isolate(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}
    )
    assert verdicts(not_in, correct=True)["nokey"] is False
    assert verdicts(not_in, correct=False)["nokey"] is True  # cyclonus alone: not selected
    # matchLabels {tier: ""} selects only a pod with the key and an empty value
    empty = isolate({"matchLabels": {"tier": ""}})
    assert verdicts(empty, correct=True) == {"nokey": True, "empty": False, "front": True}
    assert verdicts(empty, correct=False)["nokey"] is False  # cyclonus alone: selected
