"""The Helm chart (charts/envisolation): linted, rendered, compared with manifests/, and
installed, upgraded and uninstalled on a cluster of its own with Helm built from its Go
module (hack/build-helm)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.conftest import (
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
CHART = ROOT / "charts" / "envisolation"
NS = "envisolation-system"
DENY = "envisolation-default-deny"

EVERY_OPTION = {
    "image": {"repository": "registry.example.com/envisolation", "tag": "9.9.9",
              "digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "replicaCount": 3,
    "leaderElection": {"enabled": True, "leaseName": "iso", "leaseDuration": 20,
                       "renewDeadline": 12, "retryPeriod": 3},
    "logFormat": "console",
    "resyncSeconds": 300,
    "exposure": {"wideIPv4Prefix": 12, "wideIPv6Prefix": 48},
    "metrics": {"port": 9090, "serviceMonitor": {"enabled": True, "interval": "15s",
                                                 "labels": {"release": "prom"}}},
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "infra", "operator": "Exists"}]}]}}},
    "priorityClassName": "system-cluster-critical",
    "commonLabels": {"team": "platform"},
    "commonAnnotations": {"owner": "platform@example.com"},
    "podLabels": {"tier": "infra"},
    "podAnnotations": {"scrape": "yes"},
    "serviceAccount": {"name": "iso-operator", "annotations": {"a": "b"}},
    "podDisruptionBudget": {"enabled": True, "minAvailable": 2},
    "crds": {"install": True, "keep": False},
    "admissionGuard": {"enabled": True, "segmentLabels": ["environment", "tier"],
                       "segmentAdminGroup": "platform:admins"},
}  # fmt: skip


@pytest.fixture(scope="module")
def kubectl_bin() -> Path:
    out = subprocess.run([str(ROOT / "hack" / "build-controlplane")], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return Path(out.stdout.strip()) / "kubectl"


@pytest.fixture(scope="module")
def helm() -> str:
    out = subprocess.run([str(ROOT / "hack" / "build-helm")], capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def run(helm: str, *args: str, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    res = subprocess.run([helm, *args], capture_output=True, text=True, env=env, check=False)
    if check:
        assert res.returncode == 0, f"helm {' '.join(args)}:\n{res.stderr}"
    return res


def render(
    helm: str, values: dict[str, Any] | None = None, tmp: Path | None = None
) -> list[dict[str, Any]]:
    args = ["template", "envisolation", str(CHART), "-n", NS]
    if values is not None and tmp is not None:
        f = tmp / "values.yaml"
        f.write_text(yaml.safe_dump(values))
        args += ["-f", str(f)]
    return [d for d in yaml.safe_load_all(run(helm, *args).stdout) if d]


def by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}


# -- offline -------------------------------------------------------------------------------------


def test_the_chart_lints_strictly_with_defaults_and_with_every_option(
    helm: str, tmp_path: Path
) -> None:
    run(helm, "lint", "--strict", str(CHART))
    f = tmp_path / "all.yaml"
    f.write_text(yaml.safe_dump(EVERY_OPTION))
    run(helm, "lint", "--strict", str(CHART), "-f", str(f))


def test_every_option_lands_where_it_says(helm: str, tmp_path: Path) -> None:
    docs = by_key(render(helm, EVERY_OPTION, tmp_path))
    d = docs[("Deployment", NS, "envisolation")]
    pod = d["spec"]["template"]
    c = pod["spec"]["containers"][0]
    assert c["image"] == "registry.example.com/envisolation@sha256:" + "a" * 64
    assert c["imagePullPolicy"] == "Always"
    assert d["spec"]["replicas"] == 3
    assert {"--log-format=console", "--metrics-bind=0.0.0.0:9090", "--resync=300",
            "--leader-elect", "--lease-name=iso", "--lease-duration=20",
            "--renew-deadline=12", "--retry-period=3", "--wide-ipv4-prefix=12",
            "--wide-ipv6-prefix=48"} <= set(c["args"])  # fmt: skip
    assert c["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"][0]["key"] == "infra"
    assert (
        "nodeAffinity" in pod["spec"]["affinity"]
        and "podAntiAffinity" not in pod["spec"]["affinity"]
    )
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["spec"]["serviceAccountName"] == "iso-operator"
    assert pod["metadata"]["labels"]["tier"] == "infra"
    assert pod["metadata"]["annotations"] == {"scrape": "yes"}
    for doc in docs.values():
        assert doc["metadata"]["labels"]["team"] == "platform", doc["kind"]
        assert doc["metadata"]["annotations"]["owner"] == "platform@example.com", doc["kind"]
    crd = docs[("CustomResourceDefinition", "", "environmentisolations.envisolation.io")]
    assert "helm.sh/resource-policy" not in crd["metadata"]["annotations"]
    sm = docs[("ServiceMonitor", NS, "envisolation")]
    assert sm["spec"]["endpoints"][0]["interval"] == "15s"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert docs[("Service", NS, "envisolation-metrics")]["spec"]["ports"][0]["port"] == 9090
    assert docs[("PodDisruptionBudget", NS, "envisolation")]["spec"]["minAvailable"] == 2
    params = docs[("ConfigMap", NS, "envisolation-admission")]["data"]
    assert params == {"operatorUser": f"system:serviceaccount:{NS}:iso-operator",
                      "segmentAdminGroup": "platform:admins", "segmentLabels": "environment,tier"}  # fmt: skip
    binding = docs[("ClusterRoleBinding", "", "envisolation-operator")]
    assert binding["subjects"][0]["name"] == "iso-operator"


def test_optional_objects_are_rendered_only_when_asked(helm: str, tmp_path: Path) -> None:
    kinds = {k[0] for k in by_key(render(helm))}
    assert "ServiceMonitor" not in kinds, "no monitoring.coreos.com CRD needed by default"
    off = {"crds": {"install": False}, "admissionGuard": {"enabled": False},
           "podDisruptionBudget": {"enabled": False},
           "leaderElection": {"enabled": False}, "replicaCount": 1}  # fmt: skip
    docs = by_key(render(helm, off, tmp_path))
    kinds = {k[0] for k in docs}
    assert not kinds & {"CustomResourceDefinition", "ValidatingAdmissionPolicy",
                        "ValidatingAdmissionPolicyBinding", "PodDisruptionBudget"}  # fmt: skip
    assert ("Role", NS, "envisolation-leader-election") not in docs
    assert "--leader-elect" not in docs[("Deployment", NS, "envisolation")]["spec"]["template"][
        "spec"]["containers"][0]["args"]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--set", "imag.tag=1"], "imag"),
        (["--set", "replicaCount=zero"], "replicaCount"),
        (["--set", "logFormat=xml"], "logFormat"),
        (["--set-json", "admissionGuard.segmentLabels=[]"], "segmentLabels"),
        (["--set", "image.digest=latest"], "digest"),
        (["--set", "metrics.port=70000"], "port"),
    ],
)
def test_values_outside_the_schema_are_refused_naming_the_key(
    helm: str, args: list[str], named: str
) -> None:
    res = run(helm, "template", "x", str(CHART), *args, check=False)
    assert res.returncode != 0
    assert named in res.stderr, res.stderr


def test_the_chart_crd_is_the_crds_directory_one(helm: str) -> None:
    chart = by_key(render(helm))[
        ("CustomResourceDefinition", "", "environmentisolations.envisolation.io")
    ]
    committed = yaml.safe_load(
        (ROOT / "crds" / "environmentisolations.envisolation.io.yaml").read_text()
    )
    assert chart["spec"] == committed["spec"]
    assert chart["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


# Differences between `helm template` (defaults) and `kubectl kustomize manifests/recommended`
# that are intended, each with its reason. Everything else must be equal.
INTENDED = {
    ("Namespace", "", NS): "Helm installs into a namespace that exists before the install "
    "(`kubectl create namespace` or Argo CD's CreateNamespace); the README says to label it",
}
# Metadata Helm adds to every object (its ownership labels), and kustomize's image rewrite.
HELM_LABELS = {"app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "helm.sh/chart"}


def _squeeze(value: Any) -> Any:
    """Whitespace inside strings is not meaning (kustomize re-folds the YAML of CEL)."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, list):
        return [_squeeze(v) for v in value]
    if isinstance(value, dict):
        return {k: _squeeze(v) for k, v in value.items()}
    return value


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    doc = _squeeze(json.loads(json.dumps(doc)))
    meta = doc["metadata"]
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k not in HELM_LABELS}
    meta.pop("annotations", None)  # argocd sync waves (kustomize), resource-policy (Helm)
    if doc["kind"] == "Deployment":
        c = doc["spec"]["template"]["spec"]["containers"][0]
        c["image"] = "IMAGE"  # kustomize's `images:` and the chart's image values
        c["env"] = sorted(c["env"], key=lambda e: e["name"])
    return doc


def test_the_chart_installs_what_manifests_recommended_installs(
    helm: str, kubectl_bin: Path
) -> None:
    chart = {k: _comparable(d) for k, d in by_key(render(helm)).items()}
    kustomize = subprocess.run(
        [str(kubectl_bin), "kustomize", str(ROOT / "manifests" / "recommended")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    manifests = {k: _comparable(d) for k, d in by_key(
        [d for d in yaml.safe_load_all(kustomize) if d]).items()}  # fmt: skip
    missing = set(manifests) - set(chart) - set(INTENDED)
    extra = set(chart) - set(manifests)
    assert not missing, f"in manifests/ but not in the chart: {sorted(missing)}"
    assert not extra, f"in the chart but not in manifests/: {sorted(extra)}"
    for key in sorted(set(chart) & set(manifests)):
        assert chart[key] == manifests[key], f"{key} differs"


# -- on a cluster of its own ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = start_cluster("envisolation-helm-cluster-")
    try:
        yield c
    finally:
        stop_cluster(c)


@pytest.fixture(scope="module")
def released(helm: str, cluster: Cluster) -> Kubectl:
    k = Kubectl(cluster)
    k("create", "namespace", NS)
    k("label", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted")
    run(helm, "install", "envisolation", str(CHART), "-n", NS, env=k.env)
    eventually(lambda: k("wait", "--for=condition=established", "--timeout=30s",
                         "crd/environmentisolations.envisolation.io", check=False).returncode == 0)  # fmt: skip
    return k


def test_helm_install_runs_the_operator_with_the_charts_own_token_and_guard(
    helm: str, released: Kubectl, cluster: Cluster, tmp_path: Path
) -> None:
    k = released
    for kind, name, ns in [("deployment", "envisolation", NS), ("serviceaccount", "envisolation", NS),
                           ("clusterrole", "envisolation-operator", ""), ("role", "envisolation-events", "default"),
                           ("role", "envisolation-leader-election", NS), ("pdb", "envisolation", NS),
                           ("validatingadmissionpolicy", "envisolation-protect-managed-policies", ""),
                           ("configmap", "envisolation-admission", NS)]:  # fmt: skip
        k("get", kind, name, *(["-n", ns] if ns else []))
    token = k("create", "token", "envisolation", "-n", NS, "--duration=1h").stdout.strip()
    op = Operator(cluster, cluster.dir / "logs" / "operator-helm.log",
                  kubeconfig=k.token_kubeconfig(token, tmp_path / "kubeconfig"),
                  args=("--leader-elect", "--lease-namespace", NS), env={"POD_NAME": "helm-0"})  # fmt: skip
    op.start()
    try:
        k.apply(json.dumps({"apiVersion": "envisolation.io/v1alpha1", "kind": "EnvironmentIsolation",
                            "metadata": {"name": "helm"},
                            "spec": {"segments": [{"name": "dev"}, {"name": "prod"}]}}))  # fmt: skip
        platform(k, "create", "namespace", "helm-a")
        platform(k, "label", "namespace", "helm-a", "environment=dev")
        eventually(lambda: DENY in k.policies("helm-a"))
        # Drift: with the guard on, only the namespace controller may delete a managed policy.
        k("delete", "networkpolicy", "-n", "helm-a", "envisolation-dns",
          "--as", "system:serviceaccount:kube-system:namespace-controller")  # fmt: skip
        eventually(lambda: "envisolation-dns" in k.policies("helm-a"))
        k(
            "create",
            "rolebinding",
            "alice-edit",
            "-n",
            "helm-a",
            "--clusterrole=edit",
            "--user=alice",
        )
        res = k("delete", "networkpolicy", DENY, "-n", "helm-a", "--as", "alice", check=False)
        assert res.returncode != 0 and "kept by the envisolation operator" in res.stderr
        assert (
            k.json("get", "lease", "envisolation", "-n", NS)["spec"]["holderIdentity"] == "helm-0"
        )
    finally:
        op.stop(signal.SIGTERM)
    assert "write failed" not in op.log.read_text()


def _versions(helm: str, k: Kubectl) -> dict[tuple[str, str, str], str]:
    manifest = run(helm, "get", "manifest", "envisolation", "-n", NS, env=k.env).stdout
    out = {}
    for d in (d for d in yaml.safe_load_all(manifest) if d):
        ns = d["metadata"].get("namespace", "")
        live = k.json("get", d["kind"].lower(), d["metadata"]["name"], *(["-n", ns] if ns else []))
        out[(d["kind"], ns, d["metadata"]["name"])] = live["metadata"]["resourceVersion"]
    return out


def test_helm_upgrade_changes_only_what_the_values_say(helm: str, released: Kubectl) -> None:
    k = released
    before = _versions(helm, k)
    run(helm, "upgrade", "envisolation", str(CHART), "-n", NS, "--reuse-values",
        "--set", "admissionGuard.segmentLabels={environment,tier}", env=k.env)  # fmt: skip
    after = _versions(helm, k)
    changed = sorted(key for key in after if after[key] != before.get(key))
    assert changed == [("ConfigMap", NS, "envisolation-admission")]
    data = k.json("get", "configmap", "envisolation-admission", "-n", NS)["data"]
    assert data["segmentLabels"] == "environment,tier"


def test_helm_uninstall_keeps_the_crd_the_isolations_and_their_policies(
    helm: str, released: Kubectl
) -> None:
    k = released
    policies = {n: p["metadata"]["uid"] for n, p in k.policies("helm-a").items()}
    assert DENY in policies
    run(helm, "uninstall", "envisolation", "-n", NS, env=k.env)
    assert k("get", "deployment", "envisolation", "-n", NS, check=False).returncode != 0
    assert k("get", "clusterrole", "envisolation-operator", check=False).returncode != 0
    k("get", "crd", "environmentisolations.envisolation.io")
    k("get", "enviso", "helm")
    assert {n: p["metadata"]["uid"] for n, p in k.policies("helm-a").items()} == policies


def test_the_charts_app_version_is_the_package_version() -> None:
    import tomllib

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
