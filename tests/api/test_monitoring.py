"""Monitoring on the real cluster: exposures, `envisolation verify`, /metrics."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.api.conftest import ROOT, Kubectl, Operator, eventually
from tests.api.test_operator import condition, holds_exactly, ready, sentinel

pytestmark = pytest.mark.api


def scrape(operator: Operator) -> str:
    with urllib.request.urlopen(f"http://{operator.metrics}/metrics", timeout=5) as r:
        return r.read().decode()


def isolated_dev_and_prod(kubectl: Kubectl, make_iso, make_ns) -> tuple[str, str, str]:
    """An ingress-only isolation with a dev and a prod namespace, converged, not exposed."""
    label = f"mon.test/{secrets.token_hex(4)}"
    iso = make_iso(label, isolate=["Ingress"])
    dev, prod = make_ns({label: "dev"}), make_ns({label: "prod"})
    for ns in (dev, prod):
        eventually(lambda ns=ns: holds_exactly(kubectl, iso, ns))
    eventually(lambda: condition(kubectl, iso, "Exposed").get("status") == "False")
    return iso, dev, prod


def test_a_tenant_policy_opening_prod_to_every_namespace_is_exposed_then_cleared(
    kubectl: Kubectl, operator: Operator, make_iso, make_ns
) -> None:
    iso, dev, prod = isolated_dev_and_prod(kubectl, make_iso, make_ns)

    tenant = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "allow-all-namespaces", "namespace": prod},
              "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 8080}]}]}}  # fmt: skip
    kubectl.apply(json.dumps(tenant))
    cond = eventually(
        lambda: (
            condition(kubectl, iso, "Exposed").get("status") == "True"
            and condition(kubectl, iso, "Exposed")
        ),
        timeout=20,
    )
    assert cond["reason"] == "CrossSegmentExposure"
    assert f"{prod}/allow-all-namespaces" in cond["message"]
    status = kubectl.json("get", "enviso", iso)["status"]
    assert status["exposureCount"] == 1
    assert status["exposures"][0] == {
        "sourceSegment": "dev", "source": dev, "destinationSegment": "prod", "destination": prod,
        "ports": "TCP 8080", "policies": f"{prod}/allow-all-namespaces",
    }  # fmt: skip
    events = kubectl.json(
        "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={prod}"
    )["items"]
    assert [e for e in events if e["reason"] == "CrossSegmentExposure"]
    assert (
        kubectl.json("get", "networkpolicy", "allow-all-namespaces", "-n", prod)["metadata"][
            "generation"
        ]
        == 1
    )

    metrics = scrape(operator)
    assert (
        f'envisolation_exposures{{destination_segment="prod",isolation="{iso}",source_segment="dev"}} 1.0'
        in metrics
    )

    kubectl("delete", "networkpolicy", "allow-all-namespaces", "-n", prod)
    eventually(lambda: condition(kubectl, iso, "Exposed").get("status") == "False", timeout=20)
    lines = [x for x in scrape(operator).splitlines() if x.startswith("envisolation_exposures{")]
    assert not [x for x in lines if f'isolation="{iso}"' in x]


def tenant_policy(namespace: str) -> str:
    return json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": "allow-all-namespaces", "namespace": namespace},
                       "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}})  # fmt: skip


def exposed_by(kubectl: Kubectl, iso: str, policy: str) -> bool:
    cond = condition(kubectl, iso, "Exposed")
    return cond.get("status") == "True" and policy in cond.get("message", "")


def test_a_policy_written_before_its_namespace_joins_a_segment_is_exposed_when_it_joins(
    kubectl: Kubectl, operator: Operator, make_iso, make_ns
) -> None:
    # The operator holds foreign policies only where a segment label is; a namespace that
    # joins later has its policies read when it joins.
    label = f"mon.test/{secrets.token_hex(4)}"
    iso = make_iso(label, isolate=["Ingress"])
    dev, later = make_ns({label: "dev"}), make_ns({})
    kubectl.apply(tenant_policy(later))
    eventually(lambda: holds_exactly(kubectl, iso, dev))
    sentinel(kubectl, iso, label, make_ns)  # the tenant's policy was seen, and not kept
    # the first exposure analysis (Unknown until then) comes after the sentinel's pass
    decided = eventually(lambda: condition(kubectl, iso, "Exposed").get("status") in ("True", "False")
                         and condition(kubectl, iso, "Exposed"))  # fmt: skip
    assert decided["status"] == "False", decided
    kubectl("label", "namespace", later, f"{label}=prod")
    eventually(lambda: exposed_by(kubectl, iso, f"{later}/allow-all-namespaces"), timeout=20)
    kubectl("label", "namespace", later, f"{label}-")
    eventually(lambda: condition(kubectl, iso, "Exposed").get("status") == "False", timeout=20)


def test_a_new_isolation_sees_the_policies_that_were_there_before_it(
    kubectl: Kubectl, operator: Operator, make_iso, make_ns
) -> None:
    label = f"mon.test/{secrets.token_hex(4)}"
    dev, prod = make_ns({label: "dev"}), make_ns({label: "prod"})
    kubectl.apply(tenant_policy(prod))
    time.sleep(2)  # ordering, not an absence check: seen while no isolation uses the label
    iso = make_iso(label, isolate=["Ingress"])
    eventually(lambda: holds_exactly(kubectl, iso, dev))
    eventually(lambda: exposed_by(kubectl, iso, f"{prod}/allow-all-namespaces"), timeout=20)


def test_verify_against_the_cluster_exits_1_on_an_exposure_and_0_without(
    kubectl: Kubectl, operator: Operator, make_iso, make_ns
) -> None:
    label = f"ver.test/{secrets.token_hex(4)}"
    iso = make_iso(label, isolate=["Ingress"])
    dev, prod = make_ns({label: "dev"}), make_ns({label: "prod"})
    for ns in (dev, prod):
        eventually(lambda ns=ns: holds_exactly(kubectl, iso, ns))

    def verify() -> subprocess.CompletedProcess[str]:
        env = {**kubectl.env, "PYTHONPATH": str(ROOT / "operator")}
        return subprocess.run([sys.executable, "-m", "envisolation", "verify", "-o", "json"],
                              capture_output=True, text=True, env=env, check=False)  # fmt: skip

    def mine(res: subprocess.CompletedProcess[str]) -> dict:
        return next(r for r in json.loads(res.stdout) if r["isolation"] == iso)

    tenant = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "open", "namespace": prod},
              "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {label: "dev"}}}]}]}}  # fmt: skip
    kubectl.apply(json.dumps(tenant))
    res = verify()
    assert res.returncode == 1, res.stderr
    assert mine(res)["matrix"]["dev->prod"] == "exposed"
    kubectl("delete", "networkpolicy", "open", "-n", prod)
    res = verify()
    assert mine(res)["exposures"] == []
    assert mine(res)["matrix"]["dev->prod"] == "isolated"
    assert mine(res)["notIsolatable"] == []
    # a hostNetwork pod in a segment namespace: NetworkPolicy cannot isolate it
    hosted = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent", "namespace": dev},
              "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "envisolation.invalid/x"}]}}  # fmt: skip
    eventually(
        lambda: kubectl("apply", "-f", "-", input=json.dumps(hosted), check=False).returncode == 0
    )
    res = verify()
    assert res.returncode == 0, res.stderr  # not an exposure: listed, the exit code unchanged
    assert mine(res)["notIsolatable"] == [f"dev: {dev}/agent[Pod]"]


def test_metrics_endpoint_serves_the_series(
    kubectl: Kubectl, operator: Operator, make_iso, make_ns
) -> None:
    label = f"met.test/{secrets.token_hex(4)}"
    iso = make_iso(label, segments=[{"name": "dev"}, {"name": "prod", "enforcement": "Audit"}])
    make_ns({label: "dev"})
    make_ns({label: "dev"})
    make_ns({label: "prod"})
    eventually(
        lambda: (
            ready(kubectl, iso) and kubectl.json("get", "enviso", iso)["status"]["namespaces"] == 3
        )
    )

    def series() -> str:
        text = scrape(operator)
        assert (
            f'envisolation_namespaces{{isolation="{iso}",segment="dev",state="Isolated"}} 2.0'
            in text
        )
        assert (
            f'envisolation_namespaces{{isolation="{iso}",segment="prod",state="Audit"}} 1.0' in text
        )
        return text

    text = eventually(series, timeout=15)
    assert 'envisolation_build_info{version="' in text
    assert 'envisolation_policies_written_total{action="create"}' in text
    assert "envisolation_reconcile_duration_seconds_bucket" in text
    assert "envisolation_policies_repaired_total" in text


def test_explain_against_the_cluster(
    kubectl: Kubectl, operator: Operator, make_iso, make_ns
) -> None:
    """`envisolation explain` reads the live cluster (isolations, namespaces, pods,
    policies) through the kubeconfig, as a user runs it."""
    label = f"exp.test/{secrets.token_hex(4)}"
    iso = make_iso(label, isolate=["Ingress"])
    dev, prod = make_ns({label: "dev"}), make_ns({label: "prod"})
    for ns in (dev, prod):
        eventually(lambda ns=ns: holds_exactly(kubectl, iso, ns))
    for ns, name in ((dev, "client"), (prod, "server")):
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "envisolation.invalid/x"}]}}  # fmt: skip
        eventually(
            lambda b=body: (
                kubectl("apply", "-f", "-", input=json.dumps(b), check=False).returncode == 0
            )
        )  # SA may lag

    def explain(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**kubectl.env, "PYTHONPATH": str(ROOT / "operator")}
        return subprocess.run([sys.executable, "-m", "envisolation", "explain", *args],
                              capture_output=True, text=True, env=env, check=False)  # fmt: skip

    res = explain(f"{dev}/client", f"{prod}/server", "--port", "TCP/80")
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"{dev}/client[Pod] -> {prod}/server[Pod] on TCP 80: DENIED" in res.stdout
    assert f"the default-deny {prod}/envisolation-default-deny isolates it" in res.stdout
    assert f"segments: dev -> prod is NOT declared in {iso}'s spec" in res.stdout
    res = explain(f"{prod}/server", f"{dev}/client")  # dev isolates only ingress too
    assert res.returncode == 1
    res = explain(f"{dev}/client", f"{dev}/client-nope")
    assert res.returncode == 2 and "no workload or pod of that name" in res.stderr


def test_host_network_pods_are_reported_as_not_isolatable(
    kubectl: Kubectl, operator: Operator, make_iso, make_ns
) -> None:
    """A hostNetwork pod in a segment namespace: status.notIsolatable names it, the
    metric counts it; deleting it clears both. Other pods never reach the operator."""
    label = f"host.test/{secrets.token_hex(4)}"
    iso = make_iso(label)
    dev, other = make_ns({label: "dev"}), make_ns({})
    eventually(lambda: ready(kubectl, iso))

    def pod(ns: str, name: str, host: bool) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                           "spec": {"hostNetwork": host, "containers": [{"name": "c", "image": "envisolation.invalid/x"}]}})  # fmt: skip

    for ns, name, host in ((dev, "agent", True), (dev, "app", False), (other, "agent", True)):
        body = pod(ns, name, host)
        eventually(lambda b=body: kubectl("apply", "-f", "-", input=b, check=False).returncode == 0)

    def status() -> dict:
        return kubectl.json("get", "enviso", iso).get("status", {})

    eventually(lambda: status().get("notIsolatable") == [f"dev: {dev}/agent"], timeout=30)
    assert status()["notIsolatableCount"] == 1
    eventually(lambda: operator.metric("envisolation_not_isolatable_pods") >= 1)
    kubectl("delete", "pod", "agent", "-n", dev, "--grace-period=0", "--force")
    eventually(lambda: "notIsolatable" not in status(), timeout=30)


def test_a_wide_ipv6_block_is_a_possible_exposure_like_an_ipv4_one(
    kubectl: Kubectl, operator: Operator, make_iso, make_ns
) -> None:
    """Dual-stack: `::/0` admitted into prod is reported, as `0.0.0.0/0` is; a /64 (one
    node's pod range at most) is not."""
    iso, dev, prod = isolated_dev_and_prod(kubectl, make_iso, make_ns)
    for ns, name, cidr in ((prod, "from-anywhere-v6", "::/0"), (dev, "from-anywhere-v4", "0.0.0.0/0"),
                           (prod, "from-one-node-v6", "2001:db8:0:1::/64")):  # fmt: skip
        kubectl.apply(json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                  "metadata": {"name": name, "namespace": ns},
                                  "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": cidr}}]}]}}))  # fmt: skip
    status = eventually(
        lambda: (s := kubectl.json("get", "enviso", iso)["status"]).get("exposureCount") == 2 and s,
        timeout=20,
    )
    assert sorted((e["source"], e["destination"], e["policies"]) for e in status["exposures"]) == [
        ("ipBlock 0.0.0.0-255.255.255.255", dev, f"{dev}/from-anywhere-v4"),
        ("ipBlock ::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", prod, f"{prod}/from-anywhere-v6"),
    ]
    assert condition(kubectl, iso, "Exposed")["status"] == "True"


def test_more_namespaces_coming_into_scope_than_fetched_one_by_one_cost_one_listing(
    kubectl: Kubectl, operator: Operator, make_iso, make_ns
) -> None:
    """101 namespaces (more than sync.FETCH_EACH_MAX) come into scope with a new isolation:
    their policies are read with one cluster-wide LIST, after which nothing is listed
    again (a listing once left them waiting, and the loop listed the cluster every turn)."""
    make_iso(f"other.test/{secrets.token_hex(4)}")  # a scope is in force: not everything is kept
    time.sleep(2)
    label = f"many.test/{secrets.token_hex(4)}"
    stem = f"many-{secrets.token_hex(3)}"
    names = [f"{stem}-{i:03}" for i in range(101)]
    kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": {label: "dev"}}}
        for n in names]}))  # fmt: skip
    try:

        def lists() -> float:
            return kubectl.metric_sum("apiserver_request_total", resource="networkpolicies",
                                      verb="LIST", scope="cluster")  # fmt: skip

        before = lists()
        iso = make_iso(label, isolate=["Ingress"])
        eventually(lambda: ready(kubectl, iso) and all(kubectl.policies(n) for n in names[-3:]),
                   timeout=90)  # fmt: skip
        time.sleep(3)
        settled = lists()
        # one listing reads them (a 10-minute resync may add one; the bug made dozens)
        assert 1 <= settled - before <= 4, settled - before
        time.sleep(8)
        assert lists() - settled <= 1, "the cluster was listed again and again at steady state"
    finally:
        kubectl("delete", "namespace", *names, "--wait=false", "--ignore-not-found", check=False)


def test_a_policy_written_while_the_operator_was_down_is_exposed_after_its_start(
    kubectl: Kubectl, operator: Operator, make_iso, make_ns
) -> None:
    """The start-up listing reads only the operator's own policies (enough to plan); the
    rest is listed right after the first pass, so a tenant's policy that appeared while
    the operator was down (older than every watch) is still analysed, and the first pass
    writes nothing."""
    label = f"down.test/{secrets.token_hex(4)}"
    iso = make_iso(label, isolate=["Ingress"])
    dev, prod = make_ns({label: "dev"}), make_ns({label: "prod"})
    for ns in (dev, prod):
        eventually(lambda ns=ns: holds_exactly(kubectl, iso, ns))
    eventually(lambda: condition(kubectl, iso, "Exposed").get("status") == "False", timeout=20)
    operator.stop()
    kubectl.apply(tenant_policy(prod))
    writes = kubectl.policy_writes()
    operator.start()
    eventually(lambda: exposed_by(kubectl, iso, f"{prod}/allow-all-namespaces"), timeout=30)
    assert operator.metric("envisolation_policies_written_total") == 0
    assert kubectl.policy_writes() == writes
