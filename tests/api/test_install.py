"""The recommended install (manifests/recommended), proven on a cluster of its own.

The operator runs with exactly its ServiceAccount's token; the admission guard is on.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import (
    ADMINS,
    ROOT,
    Cluster,
    Kubectl,
    Operator,
    eventually,
    platform,
    start_cluster,
    stop_cluster,
)

pytestmark = pytest.mark.api

SA = "system:serviceaccount:envisolation-system:envisolation"
DENY = "envisolation-default-deny"


@pytest.fixture(scope="module")
def guarded() -> Iterator[Cluster]:
    c = start_cluster("envisolation-install-cluster-")
    try:
        yield c
    finally:
        stop_cluster(c)


@pytest.fixture(scope="module")
def k(guarded: Cluster) -> Kubectl:
    return Kubectl(guarded)


@pytest.fixture(scope="module")
def installed(k: Kubectl) -> Kubectl:
    k("apply", "-f", str(ROOT / "manifests" / "base" / "namespace.yaml"))
    dry = k("apply", "-k", str(ROOT / "manifests" / "recommended"), "--dry-run=server")
    assert "created (server dry run)" in dry.stdout
    k("apply", "--server-side", "-k", str(ROOT / "manifests" / "recommended"))
    k.install_crds()
    return k


@pytest.fixture(scope="module")
def sa_operator(
    installed: Kubectl, guarded: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    token = installed(
        "create", "token", "envisolation", "-n", "envisolation-system", "--duration=2h"
    ).stdout.strip()
    path = installed.token_kubeconfig(token, tmp_path_factory.mktemp("sa") / "kubeconfig")
    op = Operator(guarded, guarded.dir / "logs" / "operator-sa.log", kubeconfig=path,
                  args=("--leader-elect", "--lease-namespace", "envisolation-system"),
                  env={"POD_NAME": "envisolation-sa-0"})  # fmt: skip
    op.start()
    try:
        yield op
    finally:
        op.stop(signal.SIGTERM)


def test_everything_is_created(installed: Kubectl) -> None:
    for kind, name, ns in [
        ("namespace", "envisolation-system", None),
        ("serviceaccount", "envisolation", "envisolation-system"),
        ("deployment", "envisolation", "envisolation-system"),
        ("service", "envisolation-metrics", "envisolation-system"),
        ("configmap", "envisolation-admission", "envisolation-system"),
        ("clusterrole", "envisolation-operator", None),
        ("clusterrole", "envisolation-view", None),
        ("clusterrole", "envisolation-edit", None),
        ("clusterrolebinding", "envisolation-operator", None),
        ("role", "envisolation-events", "default"),
        ("role", "envisolation-leader-election", "envisolation-system"),
        ("poddisruptionbudget", "envisolation", "envisolation-system"),
        ("validatingadmissionpolicy", "envisolation-protect-managed-policies", None),
        ("validatingadmissionpolicy", "envisolation-protect-segment-label", None),
        ("crd", "environmentisolations.envisolation.io", None),
    ]:
        args = ["get", kind, name] + (["-n", ns] if ns else [])
        installed(*args)
    svc = installed.json("get", "service", "envisolation-metrics", "-n", "envisolation-system")
    assert svc["spec"]["ports"][0]["name"] == "metrics"


def test_admission_policies_type_check_cleanly(installed: Kubectl) -> None:
    for name in ("envisolation-protect-managed-policies", "envisolation-protect-segment-label"):

        def checked(name: str = name) -> bool:
            status = installed.json("get", "validatingadmissionpolicy", name).get("status", {})
            assert status.get("typeChecking", {}).get("expressionWarnings") in (None, []), status
            return "typeChecking" in status

        eventually(checked)


def test_the_operator_pod_is_admitted_under_restricted_pod_security(installed: Kubectl) -> None:
    ns = installed.json("get", "namespace", "envisolation-system")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    def pod() -> dict:
        pods = installed.json(
            "get", "pods", "-n", "envisolation-system", "-l", "app.kubernetes.io/name=envisolation"
        )
        return pods["items"][0] if pods["items"] else {}

    p = eventually(pod, timeout=60)
    c = p["spec"]["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert p["spec"]["securityContext"]["runAsUser"] == 65532
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "priv", "namespace": "envisolation-system"},
           "spec": {"containers": [{"name": "x", "image": "x", "securityContext": {"privileged": True}}]}}  # fmt: skip
    res = installed("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert res.returncode != 0
    assert "violates PodSecurity" in res.stderr


def test_the_service_account_is_denied_what_it_must_not_do(installed: Kubectl) -> None:
    for verb, resource in [("get", "secrets"), ("list", "secrets"), ("patch", "namespaces"),
                           ("update", "namespaces"), ("create", "pods"), ("delete", "environmentisolations"),
                           ("get", "pods"), ("delete", "pods"), ("list", "pods"),
                           ("create", "networkpolicies.networking.k8s.io"), ("patch", "environmentisolations.envisolation.io")]:  # fmt: skip
        res = installed("auth", "can-i", verb, resource, "-A", "--as", SA, check=False)
        expected = "yes" if (verb, resource) in {
            ("create", "networkpolicies.networking.k8s.io"), ("patch", "environmentisolations.envisolation.io"),
            ("list", "pods"),  # hostNetwork pods only, by field selector (status.notIsolatable)
        } else "no"  # fmt: skip
        assert res.stdout.strip() == expected, (verb, resource, res.stdout)
    assert (
        installed(
            "auth", "can-i", "create", "events", "-n", "default", "--as", SA, check=False
        ).stdout.strip()
        == "yes"
    )
    assert (
        installed(
            "auth", "can-i", "create", "events", "-n", "kube-system", "--as", SA, check=False
        ).stdout.strip()
        == "no"
    )
    # Leader election: one Lease in its own namespace, nothing cluster-wide.
    for verb, ns, expected in [("get", "envisolation-system", "yes"),
                               ("create", "envisolation-system", "yes"),
                               ("update", "envisolation-system", "yes"),
                               ("delete", "envisolation-system", "no"),
                               ("update", "default", "no"), ("get", "kube-system", "no")]:  # fmt: skip
        res = installed("auth", "can-i", verb, "leases.coordination.k8s.io", "-n", ns,
                        "--as", SA, check=False)  # fmt: skip
        assert res.stdout.strip() == expected, (verb, ns, res.stdout)


def test_the_deployment_runs_two_replicas_that_elect_a_leader(installed: Kubectl) -> None:
    d = installed.json("get", "deployment", "envisolation", "-n", "envisolation-system")
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert "--leader-elect" in c["args"]
    assert {
        "name": "POD_NAME",
        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
    } in c["env"]
    assert c["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "metrics",
        "scheme": "HTTP",
    }
    pdb = installed.json("get", "pdb", "envisolation", "-n", "envisolation-system")
    assert pdb["spec"]["minAvailable"] == 1


def test_the_operator_with_only_its_token_runs_the_lifecycle(
    installed: Kubectl, sa_operator: Operator
) -> None:
    k = installed
    spec = {"apiVersion": "envisolation.io/v1alpha1", "kind": "EnvironmentIsolation",
            "metadata": {"name": "lifecycle"},
            "spec": {"segments": [{"name": "dev"}, {"name": "prod"}], "deletionPolicy": "Delete",
                     "allow": [{"name": "web", "podSelector": {"matchLabels": {"app": "web"}},
                                "ingress": [{"ports": [{"port": 80}]}]}]}}  # fmt: skip
    k("apply", "-f", "-", input=json.dumps(spec))
    platform(k, "create", "namespace", "life-a")
    platform(k, "label", "namespace", "life-a", "environment=dev")
    want = {DENY, "envisolation-same-segment", "envisolation-dns", "envisolation-allow-web"}
    eventually(lambda: set(k.policies("life-a")) == want)
    uid = k.policies("life-a")[DENY]["metadata"]["uid"]
    platform(k, "label", "namespace", "life-a", "environment=prod", "--overwrite")
    eventually(
        lambda: (
            k.policies("life-a")["envisolation-same-segment"]["metadata"]["labels"][
                "envisolation.io/segment"
            ]
            == "prod"
        )
    )
    assert k.policies("life-a")[DENY]["metadata"]["uid"] == uid

    def ready() -> bool:
        conds = k.json("get", "enviso", "lifecycle").get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    eventually(ready)
    events = k.json(
        "get", "events", "-n", "default", "--field-selector", "involvedObject.name=life-a"
    )["items"]
    assert any(e["reason"] == "PoliciesUpdated" for e in events)
    lease = k.json("get", "lease", "envisolation", "-n", "envisolation-system")
    assert lease["spec"]["holderIdentity"] == "envisolation-sa-0", "it led with its token alone"
    assert (
        "envisolation.io/finalizer"
        in k.json("get", "enviso", "lifecycle")["metadata"]["finalizers"]
    )
    k("delete", "enviso", "lifecycle", "--timeout=60s")
    assert k.policies("life-a") == {}
    assert "write failed" not in sa_operator.log.read_text()


def test_the_admission_guard_keeps_tenants_from_undoing_isolation(
    installed: Kubectl, sa_operator: Operator
) -> None:
    k = installed
    spec = {"apiVersion": "envisolation.io/v1alpha1", "kind": "EnvironmentIsolation",
            "metadata": {"name": "guarded"}, "spec": {"segments": [{"name": "dev"}, {"name": "prod"}]}}  # fmt: skip
    k("apply", "-f", "-", input=json.dumps(spec))
    platform(k, "create", "namespace", "tenant-a")
    platform(k, "label", "namespace", "tenant-a", "environment=dev")
    eventually(lambda: DENY in k.policies("tenant-a"))
    k("create", "rolebinding", "alice-edit", "-n", "tenant-a", "--clusterrole=edit", "--user=alice")
    alice = ["--as", "alice", "-n", "tenant-a"]

    res = k("delete", "networkpolicy", DENY, *alice, check=False)
    assert res.returncode != 0
    assert "kept by the envisolation operator" in res.stderr
    res = k(
        "patch",
        "networkpolicy",
        DENY,
        *alice,
        "--type=merge",
        "-p",
        '{"spec":{"ingress":[{}]}}',
        check=False,
    )
    assert res.returncode != 0
    assert "kept by the envisolation operator" in res.stderr
    forged = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "forged", "labels": {"app.kubernetes.io/managed-by": "envisolation"}},
              "spec": {"podSelector": {}, "ingress": [{}]}}  # fmt: skip
    assert k("apply", "-f", "-", *alice, input=json.dumps(forged), check=False).returncode != 0
    own = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "team-web"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}}  # fmt: skip
    k("apply", "-f", "-", *alice, input=json.dumps(own))
    k("patch", "networkpolicy", "team-web", *alice, "--type=merge", "-p", '{"spec":{"ingress":[]}}')
    k("delete", "networkpolicy", "team-web", *alice)

    # Namespace labels: RBAC may allow it, the guard still says who may move a namespace.
    k("create", "clusterrole", "ns-labeler", "--verb=get,patch,update", "--resource=namespaces")
    k("create", "clusterrolebinding", "bob-labeler", "--clusterrole=ns-labeler", "--user=bob")
    k(
        "create",
        "clusterrolebinding",
        "admins-labeler",
        "--clusterrole=ns-labeler",
        f"--group={ADMINS}",
    )
    res = k(
        "label",
        "namespace",
        "tenant-a",
        "environment=prod",
        "--overwrite",
        "--as",
        "bob",
        check=False,
    )
    assert res.returncode != 0
    assert "reserved to members of envisolation:segment-admins" in res.stderr
    res = k("label", "namespace", "tenant-a", "environment-", "--as", "bob", check=False)
    assert res.returncode != 0
    k("label", "namespace", "tenant-a", "team=web", "--as", "bob")  # other labels are fine
    k(
        "label",
        "namespace",
        "tenant-a",
        "environment=prod",
        "--overwrite",
        "--as",
        "carol",
        "--as-group",
        ADMINS,
    )
    # ...and the operator (its own identity) still can write the policies.
    eventually(
        lambda: (
            k.policies("tenant-a")[DENY]["metadata"]["labels"]["envisolation.io/segment"] == "prod"
        )
    )


def test_a_user_with_view_can_get_environmentisolations(installed: Kubectl) -> None:
    installed("create", "clusterrolebinding", "viewer-view", "--clusterrole=view", "--user=viewer")
    eventually(
        lambda: (
            installed("get", "environmentisolations", "--as", "viewer", check=False).returncode == 0
        )
    )
    assert (
        installed(
            "auth", "can-i", "delete", "environmentisolations", "--as", "viewer", check=False
        ).stdout.strip()
        == "no"
    )
    installed("create", "clusterrolebinding", "editor-edit", "--clusterrole=edit", "--user=editor")
    eventually(
        lambda: (
            installed(
                "auth", "can-i", "patch", "environmentisolations", "--as", "editor", check=False
            ).stdout.strip()
            == "yes"
        )
    )


def test_manifests_reference_the_crd_from_crds_not_a_copy() -> None:
    base = (ROOT / "manifests" / "base" / "kustomization.yaml").read_text()
    assert "../../crds" in base
    assert not list(Path(ROOT / "manifests").rglob("*customresourcedefinition*"))
