"""The seed's picture, proven by packets, with the operator keeping the policies.

dev, test and prod namespaces, each with a frontend, a backend and an api pod, plus a DNS
pod in kube-system; examples/three-segments.yaml applied; every pod pair and every probed
port checked against `envisolation reachability` of the same live state. The tests run in
order on one lab and each sets the isolation it needs first.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from envisolation.cli import render_all
from envisolation.policy.render import RenderContext
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts
from tests.api.conftest import ROOT, Kubectl, Operator, eventually
from tests.dataplane.conftest import record
from tests.dataplane.lab import OPEN, Endpoint, Lab, Port, Probe
from tests.dataplane.verdicts import Expected, expected, mismatches

SEGMENTS = ("dev", "test", "prod")
APPS = ("frontend", "backend", "api")
PROBED = (("TCP", 80), ("TCP", 81), ("TCP", 8443), ("TCP", 53), ("UDP", 53))
PORTS = (Port("TCP", 80, "http"), Port("TCP", 81), Port("TCP", 8443, "https"),
         Port("TCP", 53, "dns-tcp"), Port("UDP", 53, "dns"))  # fmt: skip
EXAMPLE = yaml.safe_load((ROOT / "examples" / "three-segments.yaml").read_text())
CTX = RenderContext(operator_namespace="envisolation-system")


@pytest.fixture(scope="module")
def seed(lab: Lab, kubectl: Kubectl, operator: Operator) -> dict[str, Endpoint]:
    """The pods, listening on every probed port, and proof that each listener answers."""
    pods = []
    for seg in SEGMENTS:
        lab.namespace(seg, {"environment": seg})
        pods += [(seg, app, {"app": app}, PORTS) for app in APPS]
    lab.namespace("kube-system")
    pods.append(("kube-system", "dns", {"k8s-app": "kube-dns"}, PORTS))
    eps = {e.key: e for e in lab.add_pods(pods)}
    lab.settle()
    control = all_probes(list(eps.values()))
    got = lab.probe(control)
    closed = [f"{p.src.key}->{p.dst.key} {p.protocol}/{p.port}: {v}"
              for p, v in zip(control, got, strict=True) if v != OPEN]  # fmt: skip
    assert not closed, "before any policy, every listener must answer:\n" + "\n".join(closed)
    return eps


def all_probes(eps: Sequence[Endpoint], ports: Sequence[tuple[str, int]] = PROBED) -> list[Probe]:
    return [Probe(a, b, proto, port) for a in eps for b in eps if a is not b
            for proto, port in ports]  # fmt: skip


def isolation(**changes: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    for change in changes.values():
        change(body["spec"])
    return body


def prod_enforce(spec: dict[str, Any]) -> None:
    spec["segments"][2]["enforcement"] = "Enforce"


def same_segment_deny(spec: dict[str, Any]) -> None:
    """sameSegment: Deny; with Egress isolated the frontend also needs its egress declared."""
    spec["sameSegment"] = "Deny"
    spec["allow"].append({
        "name": "frontend-calls-backend", "podSelector": {"matchLabels": {"app": "frontend"}},
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "backend"}}}],
                    "ports": [{"protocol": "TCP", "port": 80}]}],
    })  # fmt: skip


def converged(kubectl: Kubectl) -> None:
    """The operator's policies are what `render` says of the live isolations and namespaces."""
    isos = [
        EnvironmentIsolation.from_body(i)
        for i in kubectl.json("get", "environmentisolations")["items"]
    ]
    nss = [NamespaceFacts.from_body(n) for n in kubectl.json("get", "namespaces")["items"]]
    want = {(p["metadata"]["namespace"], p["metadata"]["name"]): json.loads(json.dumps(p["spec"]))
            for p in render_all(isos, nss, CTX)}  # fmt: skip
    live = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"] for p in kubectl.json(
        "get", "networkpolicies", "-A", "-l", "app.kubernetes.io/managed-by=envisolation")["items"]}  # fmt: skip
    assert live == want


def apply_and_settle(lab: Lab, kubectl: Kubectl, body: dict[str, Any]) -> float:
    t0 = time.monotonic()
    kubectl.apply(json.dumps(body))
    eventually(lambda: converged(kubectl) is None, timeout=60, interval=0.1)
    lab.settle()
    return time.monotonic() - t0


def check(
    lab: Lab, kubectl: Kubectl, eps: dict[str, Endpoint], work: Path
) -> tuple[Expected, dict[Probe, str]]:
    """Every pair and port: the packet verdict equals reachability's."""
    probes = all_probes(list(eps.values()))
    got = lab.probe(probes)
    want = expected(kubectl, work)
    bad = mismatches(probes, got, want)
    assert not bad, f"{len(bad)} of {len(probes)} probes disagree:\n" + "\n".join(bad)
    return want, dict(zip(probes, got, strict=True))


def verdict(seen: dict[Probe, str], src: str, dst: str, proto: str, port: int) -> str:
    return next(v for p, v in seen.items()
                if (p.src.key, p.dst.key, p.protocol, p.port) == (src, dst, proto, port))  # fmt: skip


def verify_matrix(kubectl: Kubectl, work: Path) -> dict[str, str]:
    objs = kubectl.json("get", "environmentisolations,namespaces,networkpolicies", "-A")
    (work / "verify.json").write_text(json.dumps(objs))
    res = subprocess.run([sys.executable, "-m", "envisolation", "verify", "--from", str(work / "verify.json"),
                          "-o", "json", "--operator-namespace", "envisolation-system"],
                         capture_output=True, text=True, check=False,
                         env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert res.returncode in (0, 1), res.stderr
    return dict(json.loads(res.stdout)[0]["matrix"])


def segment_paths(seen: dict[Probe, str]) -> set[tuple[str, str]]:
    """Segment pairs some packet crossed (pods of the three segments only)."""
    out = set()
    for p, v in seen.items():
        a, b = p.src.key.split("/")[0], p.dst.key.split("/")[0]
        if v == OPEN and a in SEGMENTS and b in SEGMENTS:
            out.add((a, b))
    return out


def test_seed_picture_by_packets(
    lab: Lab, kubectl: Kubectl, seed: dict[str, Endpoint], tmp_path: Path
) -> None:
    # 1. As the example ships: prod in Audit, so nothing is written there and prod is open.
    apply_and_settle(lab, kubectl, isolation())
    _, seen = check(lab, kubectl, seed, tmp_path)
    # a pod outside every segment reaches prod (Audit: not isolated) but not dev (Enforce);
    # dev's own pods cannot reach prod either: dev isolates its egress
    assert verdict(seen, "kube-system/dns", "prod/backend", "TCP", 81) == OPEN
    assert verdict(seen, "kube-system/dns", "dev/backend", "TCP", 81) != OPEN
    assert verdict(seen, "dev/frontend", "prod/backend", "TCP", 81) != OPEN
    matrix = verify_matrix(kubectl, tmp_path)
    assert matrix["dev->test"] == "isolated"

    # 2. prod enforced: cross-segment traffic dropped except the declared test -> prod api.
    apply_and_settle(lab, kubectl, isolation(p=prod_enforce))
    _, seen = check(lab, kubectl, seed, tmp_path)
    crossed = segment_paths(seen)
    assert {(a, b) for a, b in crossed if a != b} == {("test", "prod")}
    for seg in SEGMENTS:
        for src in SEGMENTS:
            want = OPEN if (src, seg) in (("test", "prod"),) or src == seg else "denied"
            got = verdict(seen, f"{src}/frontend", f"{seg}/api", "TCP", 8443)
            assert (got == OPEN) == (want == OPEN), (src, seg, got)
        # DNS from every segment, and nothing else into kube-system
        for app in APPS:
            assert verdict(seen, f"{seg}/{app}", "kube-system/dns", "UDP", 53) == OPEN
            assert verdict(seen, f"{seg}/{app}", "kube-system/dns", "TCP", 53) == OPEN
            assert verdict(seen, f"{seg}/{app}", "kube-system/dns", "TCP", 80) != OPEN
    matrix = verify_matrix(kubectl, tmp_path)
    for a in SEGMENTS:
        for b in SEGMENTS:
            isolated = matrix[f"{a}->{b}"] == "isolated"
            assert not (isolated and (a, b) in crossed), (
                f"verify says {a}->{b} isolated; packets crossed"
            )
    assert matrix["test->prod"] == "allowed"

    # 3. sameSegment: Deny: inside a segment only the declared frontend -> backend TCP 80.
    apply_and_settle(lab, kubectl, isolation(p=prod_enforce, s=same_segment_deny))
    _, seen = check(lab, kubectl, seed, tmp_path)
    for seg in SEGMENTS:
        assert verdict(seen, f"{seg}/frontend", f"{seg}/backend", "TCP", 80) == OPEN
        assert verdict(seen, f"{seg}/frontend", f"{seg}/backend", "TCP", 81) != OPEN
        assert verdict(seen, f"{seg}/backend", f"{seg}/frontend", "TCP", 80) != OPEN
    record("seed_picture", probes_per_state=len(seen), states=3, verdicts_agreeing=3 * len(seen))


def test_never_open_during_a_move_or_a_join(
    lab: Lab, kubectl: Kubectl, seed: dict[str, Endpoint], tmp_path: Path
) -> None:
    apply_and_settle(lab, kubectl, isolation(p=prod_enforce))
    lab.namespace("mover", {"environment": "dev"})
    lab.namespace("joiner", {})
    extra = lab.add_pods([(ns, app, {"app": app}, PORTS) for ns in ("mover", "joiner")
                          for app in ("frontend", "backend")])  # fmt: skip
    eventually(lambda: converged(kubectl) is None, timeout=60, interval=0.1)
    lab.settle()
    others = [seed[f"{s}/{a}"] for s in SEGMENTS for a in APPS]
    figures: dict[str, Any] = {}
    changes = (("move dev->prod", "mover", {"environment": "prod"}),
               ("move prod->dev", "mover", {"environment": "dev"}),
               ("move dev->prod again", "mover", {"environment": "prod"}),
               ("join test", "joiner", {"environment": "test"}),
               ("leave test", "joiner", {}),
               ("join test again", "joiner", {"environment": "test"}))  # fmt: skip
    for name, ns, new_labels in changes:
        moving = [e for e in extra if e.key.startswith(ns + "/")]
        probes = [
            Probe(a, b, proto, port) for a in others for b in moving for proto, port in PROBED
        ]
        probes += [
            Probe(b, a, proto, port) for a in others for b in moving for proto, port in PROBED
        ]
        before = expected(kubectl, tmp_path)
        prober = lab.start_prober(probes, per_second=50)
        time.sleep(1.0)
        t0 = time.monotonic()
        lab.namespace(ns, new_labels)
        eventually(lambda: converged(kubectl) is None, timeout=60, interval=0.05)
        converged_s = time.monotonic() - t0
        lab.settle()
        flux_s = time.monotonic() - t0
        time.sleep(1.0)
        results = prober.stop()
        after = expected(kubectl, tmp_path)
        leaks = [f"t={at - t0:+.3f}s {p.src.key}->{p.dst.key} {p.protocol}/{p.port}"
                 for at, p, v in results if v == OPEN and not before.allows(p) and not after.allows(p)]  # fmt: skip
        errors = [f"{p.src.key}->{p.dst.key} {p.protocol}/{p.port}: {v}" for _, p, v in results
                  if v not in (OPEN, "refused", "timeout")]  # fmt: skip
        assert not errors, "\n".join(errors[:20])
        assert not leaks, f"{name}: connections neither state allows:\n" + "\n".join(leaks[:20])
        sent = len(results)
        window = max(at for at, *_ in results) - min(at for at, *_ in results)
        assert sent / window >= 20, f"{name}: only {sent / window:.1f} probes/s"
        final = lab.probe(probes)
        assert not mismatches(probes, final, after)
        figures[name] = {"probes": sent, "probes_per_s": round(sent / window, 1),
                         "operator_converged_s": round(converged_s, 3),
                         "rules_in_flux_s": round(flux_s, 3),
                         "changed_verdicts": sum(before.allows(p) != after.allows(p) for p in probes)}  # fmt: skip
    record("never_open", **figures)


def _until_denied(lab: Lab, probes: Sequence[Probe], t0: float, timeout: float = 60) -> float:
    """Seconds from t0 until every probe is denied (probing in rounds, no fixed sleep)."""
    while time.monotonic() - t0 < timeout:
        if all(v != OPEN for v in lab.probe(probes, timeout=0.5)):
            return time.monotonic() - t0
        time.sleep(0.01)
    raise AssertionError(f"still open after {timeout}s")


def test_off_and_audit_leave_traffic_open_until_enforced(
    lab: Lab, kubectl: Kubectl, seed: dict[str, Endpoint], tmp_path: Path
) -> None:
    """Off removes dev's policies and Audit writes none, so dev is open to a pod outside
    every segment; Enforce closes it, timed from `kubectl apply` to the first round of
    probes all denied. (Audit straight after Enforce would leave the old policies in
    place: Audit never writes, so it is reached through Off, as a rollout does.)"""

    def dev(mode: str) -> Callable[[dict[str, Any]], None]:
        def change(spec: dict[str, Any]) -> None:
            spec["segments"][0]["enforcement"] = mode

        return change

    into_dev = [Probe(seed["kube-system/dns"], seed[f"dev/{app}"], "TCP", 81) for app in APPS]
    figures: dict[str, float] = {}
    for steps in (("Off",), ("Off", "Audit")):
        for mode in steps:
            apply_and_settle(lab, kubectl, isolation(p=prod_enforce, d=dev(mode)))
            _, seen = check(lab, kubectl, seed, tmp_path)
            assert all(seen[p] == OPEN for p in into_dev), f"dev in {mode} should be open"
        t0 = time.monotonic()
        kubectl.apply(json.dumps(isolation(p=prod_enforce)))
        closed_s = _until_denied(lab, into_dev, t0)
        eventually(lambda: converged(kubectl) is None, timeout=60, interval=0.1)
        lab.settle()
        check(lab, kubectl, seed, tmp_path)
        figures[f"{steps[-1].lower()}_to_enforce_closed_s"] = round(closed_s, 3)
    record("audit_off_to_enforce", **figures)


def exposed(kubectl: Kubectl) -> dict[str, Any]:
    status = kubectl.json("get", "environmentisolations", "environments").get("status", {})
    cond = next((c for c in status.get("conditions", []) if c["type"] == "Exposed"), {})
    return {"status": cond.get("status"), "message": cond.get("message", ""),
            "exposures": status.get("exposures", [])}  # fmt: skip


TENANT = [
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "tenant-admit-dev", "namespace": "prod"},
     "spec": {"podSelector": {"matchLabels": {"app": "backend"}}, "policyTypes": ["Ingress"],
              "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"environment": "dev"}}}],
                           "ports": [{"protocol": "TCP", "port": 80}]}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "tenant-call-prod", "namespace": "dev"},
     "spec": {"podSelector": {"matchLabels": {"app": "frontend"}}, "policyTypes": ["Egress"],
              "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"environment": "prod"}}}]}]}},
]  # fmt: skip


def test_exposure_by_packets_and_in_status(
    lab: Lab, kubectl: Kubectl, seed: dict[str, Endpoint], tmp_path: Path
) -> None:
    apply_and_settle(lab, kubectl, isolation(p=prod_enforce))
    path = Probe(seed["dev/frontend"], seed["prod/backend"], "TCP", 80)
    assert lab.probe([path]) != [OPEN]
    eventually(lambda: exposed(kubectl)["status"] == "False", timeout=60)
    t0 = time.monotonic()
    for pol in TENANT:
        kubectl.apply(json.dumps(pol))
    lab.settle()
    _, seen = check(lab, kubectl, seed, tmp_path)
    assert seen[path] == OPEN, "the tenant policies reopen dev -> prod"
    eventually(lambda: exposed(kubectl)["status"] == "True", timeout=60)
    reported_s = time.monotonic() - t0
    ex = exposed(kubectl)
    assert "tenant-admit-dev" in json.dumps(ex["exposures"]) + ex["message"]
    # the analysis never misses a path the packets show
    shown = {(e["sourceSegment"], e["destinationSegment"]) for e in ex["exposures"]}
    crossed = {(a, b) for a, b in segment_paths(seen) if a != b and (a, b) != ("test", "prod")}
    assert crossed <= shown, f"packets crossed {crossed - shown}, not reported"
    for pol in TENANT:
        kubectl(
            "delete", "networkpolicy", "-n", pol["metadata"]["namespace"], pol["metadata"]["name"]
        )
    lab.settle()
    assert lab.probe([path]) != [OPEN]
    eventually(lambda: exposed(kubectl)["status"] == "False", timeout=60)
    check(lab, kubectl, seed, tmp_path)
    record("exposure", reported_after_s=round(reported_s, 3), crossed=sorted(crossed))
