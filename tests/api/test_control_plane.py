"""Smoke tests: the local control plane behaves like a real cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.api.conftest import Kubectl, eventually

pytestmark = pytest.mark.api

POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: NS}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress: [{ports: [{port: 80}]}]
"""


def test_kubectl_creates_a_namespace_and_a_network_policy(kubectl: Kubectl, make_ns) -> None:
    ns = make_ns()
    kubectl.apply(POLICY.replace("NS", ns))
    got = kubectl.json("get", "networkpolicy", "web", "-n", ns)
    assert got["spec"]["ingress"][0]["ports"][0] == {"port": 80, "protocol": "TCP"}


def test_server_side_apply_twice_changes_nothing(kubectl: Kubectl, make_ns) -> None:
    ns = make_ns()
    manifest = POLICY.replace("NS", ns)
    kubectl.apply(manifest, "--server-side", "--field-manager=smoke")
    rv1 = kubectl.json("get", "networkpolicy", "web", "-n", ns)["metadata"]["resourceVersion"]
    kubectl.apply(manifest, "--server-side", "--field-manager=smoke")
    rv2 = kubectl.json("get", "networkpolicy", "web", "-n", ns)["metadata"]["resourceVersion"]
    assert rv1 == rv2


def test_a_deleted_namespace_disappears(kubectl: Kubectl, make_ns) -> None:
    ns = make_ns()
    kubectl.apply(POLICY.replace("NS", ns))
    kubectl("delete", "namespace", ns, "--wait=false")
    eventually(lambda: kubectl("get", "namespace", ns, check=False).returncode != 0, timeout=60)


def test_owner_references_cascade(kubectl: Kubectl, make_ns) -> None:
    ns = make_ns()
    kubectl("create", "configmap", "owner", "-n", ns)
    uid = kubectl.json("get", "configmap", "owner", "-n", ns)["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": ns,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    kubectl.apply(json.dumps(child))
    kubectl("delete", "configmap", "owner", "-n", ns)
    eventually(
        lambda: kubectl("get", "configmap", "child", "-n", ns, check=False).returncode != 0,
        timeout=60,
    )


def test_a_crd_with_status_and_printer_columns_shows_them(kubectl: Kubectl, make_ns) -> None:
    kubectl.apply(
        "apiVersion: envisolation.io/v1alpha1\nkind: EnvironmentIsolation\n"
        "metadata: {name: smoke-columns}\nspec:\n  namespaceLabel: smoke.test/none\n"
        "  enforcement: Audit\n  segments: [{name: dev}]\n"
    )
    status = {"status": {"namespaces": 7, "policies": 21, "segmentNames": "dev",
                         "conditions": [{"type": "Ready", "status": "True", "reason": "Test", "message": "",
                                         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}  # fmt: skip
    kubectl(
        "patch",
        "enviso",
        "smoke-columns",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )

    # An operator left running by an earlier test may rewrite the status meanwhile: the
    # columns must show whatever the status holds when read.
    def columns() -> bool:
        out = kubectl("get", "environmentisolations", "smoke-columns").stdout
        header, row = out.splitlines()[:2]
        assert header.split() == [
            "NAME",
            "ENFORCEMENT",
            "SEGMENTS",
            "NAMESPACES",
            "POLICIES",
            "READY",
            "AGE",
        ]
        st = kubectl.json("get", "enviso", "smoke-columns")["status"]
        ready = next(c["status"] for c in st["conditions"] if c["type"] == "Ready")
        want = ["smoke-columns", "Audit", "dev", str(st["namespaces"]), str(st["policies"])]
        return bool(row.split()[:6] == [*want, ready])

    eventually(columns, timeout=10)
    kubectl("delete", "enviso", "smoke-columns")


def test_a_validating_admission_policy_denies(kubectl: Kubectl, make_ns) -> None:
    ns = make_ns({"smoke-vap": "on"})
    kubectl.apply(
        """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: smoke-no-big-configmaps}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}]
  validations: [{expression: "!has(object.data) || size(object.data) < 2", message: "too many keys"}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: smoke-no-big-configmaps}
spec:
  policyName: smoke-no-big-configmaps
  validationActions: [Deny]
  matchResources: {namespaceSelector: {matchLabels: {smoke-vap: "on"}}}
"""
    )

    def denied() -> bool:
        res = kubectl(
            "create",
            "configmap",
            "big",
            "-n",
            ns,
            "--from-literal=a=1",
            "--from-literal=b=2",
            check=False,
        )
        return res.returncode != 0 and "too many keys" in res.stderr

    try:
        eventually(denied, timeout=30)
        kubectl("create", "configmap", "small", "-n", ns, "--from-literal=a=1")
    finally:
        kubectl(
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy",
            "smoke-no-big-configmaps",
        )


def test_a_user_without_rbac_is_forbidden(kubectl: Kubectl) -> None:
    res = kubectl("get", "networkpolicies", "-A", user="nobody@example.com", check=False)
    assert res.returncode != 0
    assert "forbidden" in res.stderr.lower()


def test_service_account_tokens_work(kubectl: Kubectl, make_ns, tmp_path) -> None:
    ns = make_ns()
    kubectl("create", "serviceaccount", "reader", "-n", ns)
    token = kubectl("create", "token", "reader", "-n", ns).stdout.strip()
    kubectl.token_kubeconfig(token, tmp_path / "kubeconfig")
    res = subprocess.run(
        [str(kubectl.cluster.bin_dir / "kubectl"), "--kubeconfig", str(tmp_path / "kubeconfig"),
         "auth", "whoami", "-o", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (
        json.loads(res.stdout)["status"]["userInfo"]["username"]
        == f"system:serviceaccount:{ns}:reader"
    )


def test_hack_cluster_twice_up_twice_down_and_a_crash_give_clear_messages(tmp_path) -> None:
    import os
    import signal
    import sys

    from tests.api.conftest import HACK

    d = tmp_path / "c"

    def cluster(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(HACK / "cluster"), *args, "--dir", str(d)],
            capture_output=True,
            text=True,
            check=False,
        )

    up = cluster("up")
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={d.resolve()}/kubeconfig" in up.stdout
    state = json.loads((d / "state.json").read_text())
    again = cluster("up")
    assert again.returncode == 0
    assert "already running" in again.stderr
    os.kill(state["pids"]["kube-apiserver"], signal.SIGKILL)
    status = cluster("status")
    assert status.returncode == 1
    assert "EXITED" in status.stdout
    half = cluster("up")
    assert half.returncode == 1
    assert "half up" in half.stderr
    assert "Traceback" not in half.stderr
    down = cluster("down")
    assert down.returncode == 0
    assert "kube-apiserver had already exited" in down.stderr
    for pid in state["pids"].values():
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert not os.path.exists(state["etcd_data"])
    twice = cluster("down")
    assert twice.returncode == 0
    assert "nothing to stop" in twice.stderr
