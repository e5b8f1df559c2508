"""The operator under API Priority and Fairness, on a cluster of its own.

The operator runs with its ServiceAccount's token (system:masters is exempt from APF), and
a FlowSchema puts that ServiceAccount on a priority level of its own with the fewest seats
the server gives (3 here) and a one-request queue, so most of the 16 requests it would
send at once are answered 429. The rollout must still converge to exactly the rendered
set in every namespace, with the operator alive throughout and one warning per interval.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envisolation.policy.plan import canonical
from envisolation.policy.render import RenderContext, decide
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts
from tests.api.conftest import (
    ROOT,
    Cluster,
    Kubectl,
    Operator,
    eventually,
    start_cluster,
    stop_cluster,
)

pytestmark = pytest.mark.api

N = 240
LABEL = "env.throttle/segment"
SA = {"kind": "ServiceAccount", "serviceAccount": {"name": "envisolation",
                                                    "namespace": "envisolation-system"}}  # fmt: skip
ONE_SEAT = [
    {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": "envisolation-test-one-seat"},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 1,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {
                    "type": "Queue",
                    "queuing": {"queues": 1, "handSize": 1, "queueLengthLimit": 1},
                },
            },
        },
    },
    {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": "envisolation-test-operator"},
        "spec": {
            "priorityLevelConfiguration": {"name": "envisolation-test-one-seat"},
            "matchingPrecedence": 500,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [SA],
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "clusterScope": True,
                            "namespaces": ["*"],
                        }
                    ],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }
            ],
        },
    },
]


@pytest.fixture(scope="module")
def throttled() -> Iterator[Cluster]:
    c = start_cluster("envisolation-throttle-cluster-")
    try:
        yield c
    finally:
        stop_cluster(c)


@pytest.fixture(scope="module")
def k(throttled: Cluster) -> Kubectl:
    k = Kubectl(throttled)
    k.install_crds()
    for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        k("apply", "-f", str(ROOT / "manifests" / "base" / name))
    k.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": ONE_SEAT}))
    return k


def rendered_everywhere(k: Kubectl, iso: dict[str, Any]) -> int:
    """Assert that every namespace holds exactly its rendered policies; their number."""
    parsed = EnvironmentIsolation.from_body(iso)
    namespaces = k.json("get", "namespaces", "-l", LABEL)["items"]
    live: dict[str, dict[str, Any]] = {}
    for p in k.json("get", "networkpolicies", "-A", "-l",
                    "app.kubernetes.io/managed-by=envisolation")["items"]:  # fmt: skip
        live.setdefault(p["metadata"]["namespace"], {})[p["metadata"]["name"]] = p
    total = 0
    for ns in namespaces:
        name = ns["metadata"]["name"]
        want = decide(NamespaceFacts.from_body(ns), [parsed], RenderContext()).desired
        have = live.pop(name, {})
        assert set(have) == {p["metadata"]["name"] for p in want}, name
        for p in want:
            assert canonical(have[p["metadata"]["name"]]["spec"]) == canonical(p["spec"])
        total += len(want)
    assert not live, f"policies where none belong: {sorted(live)}"
    return total


def test_a_throttled_rollout_converges_to_exactly_the_rendered_set(
    k: Kubectl, throttled: Cluster, tmp_path: Path
) -> None:
    token = k("create", "token", "envisolation", "-n", "envisolation-system",
              "--duration=1h").stdout.strip()  # fmt: skip
    path = k.token_kubeconfig(token, tmp_path / "kubeconfig")
    op = Operator(throttled, throttled.dir / "logs" / "operator-throttled.log", kubeconfig=path)
    op.start()
    try:
        segments = ["dev", "test", "prod"]
        k.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": f"thr-{i:03d}", "labels": {LABEL: segments[i % 3]}}}
            for i in range(N)]}))  # fmt: skip
        iso = {
            "apiVersion": "envisolation.io/v1alpha1",
            "kind": "EnvironmentIsolation",
            "metadata": {"name": "throttled"},
            "spec": {"namespaceLabel": LABEL, "segments": [{"name": s} for s in segments],
                     "isolate": ["Ingress", "Egress"], "dns": {"enabled": True}},
        }  # fmt: skip
        t0 = time.monotonic()
        k.apply(json.dumps(iso))
        body = k.json("get", "enviso", "throttled")

        def converged() -> int:
            assert op.healthy()
            return rendered_everywhere(k, body)

        policies = eventually(converged, timeout=300, interval=2)
        elapsed = time.monotonic() - t0
        assert policies >= 3 * N
        throttled_429s = op.metric("envisolation_api_throttled_total")
        # The priority level did throttle the operator, and it adapted.
        assert throttled_429s > 0
        assert op.healthy()
        log = op.log.read_text()
        warnings = log.count("API requests throttled (429)")
        assert 1 <= warnings <= elapsed / 10 + 2, (warnings, elapsed)
        # No namespace failed on a 429: throttling is not a per-namespace error.
        failed = [ln for ln in log.splitlines() if "429:" in ln or "Too Many Requests" in ln]
        assert not failed, failed[:3]
        print(f"throttled rollout: {N} namespaces, {policies} policies in {elapsed:.1f}s, "
              f"{throttled_429s:.0f} responses 429, {warnings} warnings")  # fmt: skip
    finally:
        op.stop()
