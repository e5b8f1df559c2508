"""envisolation run through a real Argo CD, the way platform teams run it.

In order, on one cluster (the tests build on each other like a rollout does):
  1. the install (examples/argocd/application.yaml) syncs manifests/recommended; the
     operator then runs with exactly the installed ServiceAccount and RBAC;
  2. the isolations (examples/argocd/isolation-application.yaml) sync through the
     admission guard and stay Synced and Healthy through two minutes of refreshes; a
     team's Application sees the policies as orphans unless its project ignores them;
  3. Argo CD's own health evaluation of the shipped Lua check;
  4. a change committed to Git reaches the policies (timed);
  5. self-heal and the operator's drift repair do not fight (writes counted);
  6. pruning a namespace and the isolation from Git;
  7. the Helm chart synced by Argo CD the same way.

The one departure from a real cluster: there is no kubelet here, so the operator's
Deployment is synced with 0 replicas (a kustomize patch in the test's Application) and the
operator runs as a local process with a token of the installed ServiceAccount, as the
install tier (tests/api/test_install.py) does.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from envisolation.policy.plan import canonical
from envisolation.policy.render import RenderContext, decide
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts
from tests.api.conftest import ROOT, Cluster, Kubectl, Operator, eventually
from tests.api.test_operator import isolation_forgotten
from tests.gitops.conftest import FIGURES, Argo, Repo

pytestmark = pytest.mark.gitops

EXAMPLES = ROOT / "examples"
OPERATOR_SA = "system:serviceaccount:envisolation-system:envisolation"
NAMESPACES = ("shop-dev", "shop-test", "shop-prod", "sandbox-prod")
DENY = "envisolation-default-deny"
ISO = "environments"
# What the README tells a team's AppProject with orphanedResources.warn to ignore.
ORPHAN_IGNORE = {"group": "networking.k8s.io", "kind": "NetworkPolicy", "name": "envisolation-*"}
# How long the isolations must stay Synced and Healthy under refreshes (the 2 min;
# shorter only when iterating on the tier by hand).
STABLE_S = float(os.environ.get("ENVISOLATION_GITOPS_STABLE_S", "120"))


def application(example: str, repo: Repo, **source: Any) -> dict[str, Any]:
    """An Application from examples/argocd, pointed at a repository served here."""
    app = yaml.safe_load((EXAMPLES / "argocd" / example).read_text())
    app["spec"]["source"].update(repoURL=repo.url, targetRevision="main", **source)
    return dict(app)


NO_PODS = {  # no kubelet here: the Deployment's pods could never run (see the docstring)
    "target": {"kind": "Deployment", "name": "envisolation"},
    "patch": "- op: replace\n  path: /spec/replicas\n  value: 0\n",
}


@pytest.fixture(scope="module")
def envisolation_repo(argo: Argo) -> Repo:
    return argo.repo("envisolation", tree=[Path("crds"), Path("manifests"), Path("charts")])


@pytest.fixture(scope="module")
def platform_repo(argo: Argo) -> Repo:
    return argo.repo(
        "platform",
        files={
            "isolation/environments.yaml": (EXAMPLES / "three-segments.yaml").read_text(),
            "isolation/namespaces.yaml": (EXAMPLES / "namespaces.yaml").read_text(),
        },
    )


@pytest.fixture(scope="module")
def health_configured(kubectl: Kubectl) -> None:
    """examples/argocd/argocd-cm-health.yaml merged into argocd-cm, as the README says."""
    kubectl("apply", "-f", str(EXAMPLES / "argocd" / "argocd-cm-health.yaml"))


@pytest.fixture(scope="module")
def installed(
    argo: Argo, kubectl: Kubectl, envisolation_repo: Repo, health_configured: None
) -> dict[str, Any]:
    app = application("application.yaml", envisolation_repo)
    kustomize = app["spec"]["source"].setdefault("kustomize", {})
    kustomize.setdefault("patches", []).append(NO_PODS)
    t0 = time.monotonic()
    kubectl.apply(json.dumps(app))
    synced = argo.wait("envisolation", timeout=180)
    FIGURES["install_sync_s"] = round(time.monotonic() - t0, 1)
    return synced


@pytest.fixture(scope="module")
def operator(
    installed: dict[str, Any], cluster: Cluster, kubectl: Kubectl,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:  # fmt: skip
    token = kubectl(
        "create", "token", "envisolation", "-n", "envisolation-system", "--duration=2h"
    ).stdout.strip()
    path = kubectl.token_kubeconfig(token, tmp_path_factory.mktemp("sa") / "kubeconfig")
    op = Operator(cluster, cluster.dir / "logs" / "operator-gitops.log", kubeconfig=path,
                  args=("--leader-elect", "--lease-namespace", "envisolation-system"),
                  env={"POD_NAME": "envisolation-gitops-0"})  # fmt: skip
    op.start()
    try:
        yield op
    finally:
        op.stop(signal.SIGTERM)


def managed(kubectl: Kubectl, ns: str) -> dict[str, dict[str, Any]]:
    return {
        n: p
        for n, p in kubectl.policies(ns).items()
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "envisolation"
    }


def resource_versions(kubectl: Kubectl, ns: str) -> dict[str, str]:
    return {n: p["metadata"]["resourceVersion"] for n, p in managed(kubectl, ns).items()}


def health(argo: Argo, app: str) -> tuple[str, str]:
    """Argo CD's health of the EnvironmentIsolation, as its Application shows it."""
    for r in argo.app(app).get("status", {}).get("resources", []):
        if r.get("kind") == "EnvironmentIsolation":
            h = r.get("health", {})
            return h.get("status", ""), h.get("message", "")
    return "", ""


# -- 1. the install ---------------------------------------------------------------------


def test_the_install_syncs_through_argo_crd_first(
    argo: Argo, installed: dict[str, Any], kubectl: Kubectl
) -> None:
    st = installed["status"]
    op = st["operationState"]
    assert op["phase"] == "Succeeded", op
    assert op.get("retryCount", 0) == 0, "the first sync had to be retried"
    # Every object Argo CD manages for the Application (its last operation may be a later
    # auto-sync that re-applied one object only: seen once in CI, the stability test after
    # this one shows it does not repeat).
    synced = {(r["kind"], r["name"]) for r in st["resources"]}
    want = {
        ("CustomResourceDefinition", "environmentisolations.envisolation.io"),
        ("Namespace", "envisolation-system"), ("ServiceAccount", "envisolation"),
        ("ClusterRole", "envisolation-operator"), ("ClusterRoleBinding", "envisolation-operator"),
        ("Deployment", "envisolation"), ("PodDisruptionBudget", "envisolation"),
        ("Service", "envisolation-metrics"), ("ConfigMap", "envisolation-admission"),
        ("ValidatingAdmissionPolicy", "envisolation-protect-managed-policies"),
        ("ValidatingAdmissionPolicy", "envisolation-protect-segment-label"),
    }  # fmt: skip
    assert want <= synced, want - synced
    # Every object Argo CD synced is in the cluster, Synced and (where it has one) Healthy.
    for r in st["resources"]:
        assert r["status"] == "Synced", r
        assert r.get("health", {}).get("status", "Healthy") == "Healthy", r
        args = ["get", r["kind"].lower(), r["name"]] + (
            ["-n", r["namespace"]] if r.get("namespace") else []
        )
        kubectl(*args)
    crd = kubectl.json("get", "crd", "environmentisolations.envisolation.io")
    assert crd["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1"
    # The CRD went first: Argo CD applies a wave only once the one before it is done, and
    # its controller logs each applied object in that order.
    applied = applied_in_order(argo, "envisolation")
    first = applied[: len(synced)]  # the first sync: every object once, the CRD first
    assert first[0].startswith("customresourcedefinition.apiextensions.k8s.io/"), applied
    assert len(set(first)) == len(synced), (applied, synced)


def applied_in_order(argo: Argo, app: str) -> list[str]:
    """The objects the controller applied for `app`, in the order it logged them."""
    out = []
    for line in argo.log("application-controller").read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        msg = str(entry.get("msg", ""))
        if entry.get("application") == app and msg.startswith("Adding resource result"):
            out.append(msg.split("message: '", 1)[1].split(" ", 1)[0])
    return out


def test_the_operator_runs_with_the_installed_identity(
    operator: Operator, kubectl: Kubectl
) -> None:
    assert operator.healthy()
    res = kubectl("auth", "can-i", "list", "secrets", "-A", "--as", OPERATOR_SA, check=False)
    assert res.stdout.strip() == "no"
    eventually(operator.ready, timeout=60)


# -- 2. the isolations -------------------------------------------------------------------


@pytest.fixture(scope="module")
def isolations(
    argo: Argo, kubectl: Kubectl, platform_repo: Repo, operator: Operator
) -> dict[str, Any]:
    kubectl.apply(json.dumps(application("isolation-application.yaml", platform_repo)))
    return argo.wait("environments", timeout=120)


def test_the_isolations_sync_and_the_operator_writes_the_policies(
    isolations: dict[str, Any], kubectl: Kubectl, platform_repo: Repo
) -> None:
    for ns in ("shop-dev", "shop-test", "shop-prod"):
        eventually(lambda ns=ns: holds_git(platform_repo, kubectl, ns), timeout=60)
    assert DENY in managed(kubectl, "shop-dev")
    assert managed(kubectl, "shop-prod") == {}  # prod is in Audit: nothing written yet
    # monitoring is excluded; sandbox-prod is outside prod's namespaceSelector.
    assert managed(kubectl, "monitoring") == {}
    assert managed(kubectl, "sandbox-prod") == {}


def test_the_guard_lets_argo_label_namespaces_by_its_group_only(
    isolations: dict[str, Any], kubectl: Kubectl
) -> None:
    """Argo CD created the labelled namespaces through the admission guard because the
    example's patch puts its controller's group in segmentAdminGroup; a cluster-admin
    ServiceAccount of another namespace (a CI deployer) is refused, naming who may."""
    groups = kubectl.json("get", "configmap", "envisolation-admission", "-n",
                          "envisolation-system")["data"]["segmentAdminGroup"]  # fmt: skip
    assert groups.split(",") == ["envisolation:segment-admins", "system:serviceaccounts:argocd"]
    ns = kubectl.json("get", "namespace", "shop-dev")
    assert ns["metadata"]["labels"]["environment"] == "dev"
    assert "argocd-controller" in {m["manager"] for m in ns["metadata"]["managedFields"]}
    kubectl("create", "namespace", "ci")
    kubectl("create", "serviceaccount", "deployer", "-n", "ci")
    kubectl("create", "clusterrolebinding", "ci-deployer", "--clusterrole=cluster-admin",
            "--serviceaccount=ci:deployer")  # fmt: skip
    res = kubectl("label", "namespace", "shop-dev", "environment=prod", "--overwrite",
                  "--as", "system:serviceaccount:ci:deployer", check=False)  # fmt: skip
    assert res.returncode != 0
    assert (
        "reserved to members of envisolation:segment-admins or system:serviceaccounts:argocd"
        in res.stderr
    ), res.stderr


def test_the_isolations_stay_synced_and_healthy_through_refreshes(
    argo: Argo, isolations: dict[str, Any], kubectl: Kubectl, platform_repo: Repo
) -> None:
    """No OutOfSync from defaulted fields, status, the operator's annotations or
    finalizers; the generated NetworkPolicies are neither tracked nor orphans to prune."""
    deadline = time.monotonic() + STABLE_S
    refreshes = 0
    while time.monotonic() < deadline:
        argo.refresh("environments")
        refreshes += 1
        time.sleep(5)
        app = argo.app("environments")
        st = app["status"]
        assert st["sync"]["status"] == "Synced", st.get("resources")
        assert st["health"]["status"] == "Healthy", st.get("resources")
        assert not [c for c in st.get("conditions", []) if "Orphan" in c.get("type", "")], st[
            "conditions"
        ]
        kinds = {r["kind"] for r in st["resources"]}
        assert "NetworkPolicy" not in kinds, "Argo CD tracks the generated policies"
        assert not [r for r in st["resources"] if r.get("requiresPruning")]
    # The refreshes were real comparisons: Argo CD reconciled the app each time.
    assert refreshes >= STABLE_S / 6
    for ns in ("shop-dev", "shop-test", "shop-prod"):
        holds_git(platform_repo, kubectl, ns)
    FIGURES["stable_refreshes"] = refreshes


def orphan_warning(argo: Argo, app: str) -> str:
    conditions = argo.app(app).get("status", {}).get("conditions") or []
    return next((c["message"] for c in conditions if c["type"] == "OrphanedResourceWarning"), "")


def test_a_team_app_reports_the_policies_as_orphans_unless_its_project_ignores_them(
    argo: Argo, isolations: dict[str, Any], kubectl: Kubectl, platform_repo: Repo
) -> None:
    """Argo CD reports, for an Application whose project warns about orphaned resources,
    every top-level object in its destination namespace that no Application tracks: the
    generated NetworkPolicies are such objects in a team's namespace. Never pruned (Argo CD
    only reports orphans), but a warning the team did not cause: the README's project
    setting silences exactly them."""
    project = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
        "metadata": {"name": "team-web", "namespace": "argocd"},
        "spec": {"sourceRepos": ["*"],
                 "destinations": [{"server": "https://kubernetes.default.svc", "namespace": "shop-dev"}],
                 "orphanedResources": {"warn": True}},
    }  # fmt: skip
    kubectl.apply(json.dumps(project))
    platform_repo.write("team-web/config.yaml", yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"},
         "data": {"greeting": "hello"}}))  # fmt: skip
    platform_repo.commit("the web team's config")
    app = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "team-web", "namespace": "argocd"},
        "spec": {"project": "team-web",
                 "source": {"repoURL": platform_repo.url, "targetRevision": "main", "path": "team-web"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop-dev"},
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}},
    }  # fmt: skip
    kubectl.apply(json.dumps(app))
    argo.wait("team-web")
    policies = len(managed(kubectl, "shop-dev"))
    assert policies >= 4
    eventually(lambda: orphan_warning(argo, "team-web") == f"Application has {policies} orphaned resources",
               timeout=60)  # fmt: skip
    ignore = {"spec": {"orphanedResources": {"warn": True, "ignore": [ORPHAN_IGNORE]}}}
    kubectl(
        "patch", "appproject", "team-web", "-n", "argocd", "--type=merge", "-p", json.dumps(ignore)
    )
    argo.refresh("team-web")
    eventually(lambda: orphan_warning(argo, "team-web") == "", timeout=60)
    assert len(managed(kubectl, "shop-dev")) == policies  # reported, never pruned


# -- 3. health, as Argo CD evaluates the shipped Lua check -------------------------------


RULE = {
    "name": "dev-scrapes-health",
    "segments": ["dev"],
    "podSelector": {"matchLabels": {"app": "web"}},
    "ingress": [{"from": [{"segment": "dev"}], "ports": [{"protocol": "TCP", "port": 8081}]}],
}


def edit_isolation(repo: Repo, change: Any) -> str:
    """Commit a change of isolation/environments.yaml; the new revision."""
    path = repo.work / "isolation" / "environments.yaml"
    body = yaml.safe_load(path.read_text())
    change(body["spec"])
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return repo.commit("change the isolation")


def test_health_progressing_healthy_degraded_and_back(
    argo: Argo, isolations: dict[str, Any], kubectl: Kubectl, platform_repo: Repo,
    operator: Operator,
) -> None:  # fmt: skip
    assert health(argo, "environments")[0] == "Healthy"
    # Progressing: a new generation the operator has not observed (it is stopped, as it is
    # during a rollout of the operator itself).
    operator.stop(signal.SIGTERM)
    rev = edit_isolation(platform_repo, lambda s: s["allow"].append(RULE))
    argo.refresh("environments")
    argo.wait("environments", health="Progressing", revision=rev)
    status, message = health(argo, "environments")
    assert status == "Progressing"
    assert "observe generation" in message, message
    operator.start()
    argo.refresh("environments")
    argo.wait("environments", revision=rev)

    # Degraded with the operator's own message: a spec the CRD accepts and the operator
    # refuses (a named port that is not an IANA service name).
    def bad(spec: dict[str, Any]) -> None:
        spec["allow"][0]["ingress"][0]["ports"][0]["port"] = "not a port name"

    versions = {ns: resource_versions(kubectl, ns) for ns in ("shop-dev", "shop-test")}
    rev = edit_isolation(platform_repo, bad)
    argo.refresh("environments")
    argo.wait("environments", health="Degraded", revision=rev)
    status, message = health(argo, "environments")
    assert message.startswith("InvalidSpec: spec.allow[0].ingress[0].ports[0].port"), message
    # ...and nothing was written from the bad spec: the policies are those of before.
    assert {ns: resource_versions(kubectl, ns) for ns in versions} == versions

    def good(spec: dict[str, Any]) -> None:
        spec["allow"][0]["ingress"][0]["ports"][0]["port"] = 80

    rev = edit_isolation(platform_repo, good)
    argo.refresh("environments")
    argo.wait("environments", revision=rev)
    for ns in ("shop-dev", "shop-test", "shop-prod"):
        eventually(lambda ns=ns: holds_git(platform_repo, kubectl, ns), timeout=30)


# -- 4. change through Git ---------------------------------------------------------------


def expected(repo: Repo, kubectl: Kubectl, ns: str) -> dict[str, dict[str, Any]]:
    """What the isolation committed in Git (not the live one) says `ns` must hold."""
    body = yaml.safe_load((repo.work / "isolation" / "environments.yaml").read_text())
    iso = EnvironmentIsolation.from_body(body)
    facts = NamespaceFacts.from_body(kubectl.json("get", "namespace", ns))
    return {p["metadata"]["name"]: p for p in decide(facts, [iso], RenderContext()).desired}


def holds_git(repo: Repo, kubectl: Kubectl, ns: str) -> bool:
    want = expected(repo, kubectl, ns)
    live = managed(kubectl, ns)
    assert set(live) == set(want), f"{ns}: live {sorted(live)} != Git {sorted(want)}"
    for name, p in want.items():
        assert canonical(live[name]["spec"]) == canonical(p["spec"]), f"{ns}/{name} differs"
    return True


def push_and_time(argo: Argo, kubectl: Kubectl, repo: Repo, change: Any, ns: str) -> float:
    """Seconds from the push (and Argo CD's refresh, as a webhook would ask) until the
    policies in `ns` are those the new commit renders."""
    t0 = time.monotonic()
    edit_isolation(repo, change)
    argo.refresh("environments")
    eventually(lambda: holds_git(repo, kubectl, ns), timeout=60, interval=0.1)
    return round(time.monotonic() - t0, 2)


RULE2 = {
    "name": "dev-reports",
    "segments": ["dev"],
    "podSelector": {"matchLabels": {"app": "reports"}},
    "ingress": [{"from": [{"segment": "dev", "podSelector": {"matchLabels": {"app": "web"}}}],
                 "ports": [{"protocol": "TCP", "port": 9090}]}],
}  # fmt: skip


def test_a_commit_reaches_the_policies_within_seconds(
    argo: Argo, isolations: dict[str, Any], kubectl: Kubectl, platform_repo: Repo
) -> None:
    before = managed(kubectl, "shop-prod")
    # prod from Audit to Enforce: the default-deny starts to hold in shop-prod.
    enforce = push_and_time(
        argo, kubectl, platform_repo, lambda s: s["segments"][2].pop("enforcement"), "shop-prod"
    )
    assert managed(kubectl, "shop-prod") != before
    add = push_and_time(
        argo, kubectl, platform_repo, lambda s: s["allow"].append(RULE2), "shop-dev"
    )
    assert "envisolation-allow-dev-reports" in managed(kubectl, "shop-dev")
    drop = push_and_time(
        argo, kubectl, platform_repo, lambda s: s.update(allow=s["allow"][:-1]), "shop-dev"
    )
    assert "envisolation-allow-dev-reports" not in managed(kubectl, "shop-dev")
    FIGURES["git_to_policies_s"] = {"audit_to_enforce": enforce, "add_allow_rule": add,
                                    "remove_allow_rule": drop}  # fmt: skip
    argo.wait("environments")


# -- 5. self-heal and the operator together ----------------------------------------------


def writes(kubectl: Kubectl, resource: str) -> float:
    """Successful writes of `resource` (not its status; not Argo CD's dry runs)."""
    return kubectl.metric_sum(
        "apiserver_request_total", resource=resource, subresource="", dry_run="",
        verb="POST|PUT|PATCH|APPLY|DELETE", code="2..",
    )  # fmt: skip


def test_self_heal_reverts_a_hand_edit_and_the_policies_follow(
    argo: Argo, isolations: dict[str, Any], kubectl: Kubectl, platform_repo: Repo
) -> None:
    argo.wait("environments")
    # Automated sync with selfHeal, as examples/argocd/isolation-application.yaml has it.
    assert argo.app("environments")["spec"]["syncPolicy"]["automated"]["selfHeal"] is True
    iso_writes = writes(kubectl, "environmentisolations")
    t0 = time.monotonic()
    kubectl("patch", "enviso", ISO, "--type=merge", "-p", '{"spec":{"sameSegment":"Deny"}}')

    def reverted() -> bool:
        spec = kubectl.json("get", "enviso", ISO)["spec"]
        assert spec["sameSegment"] == "Allow", "not reverted yet"
        return True

    eventually(reverted, timeout=60, interval=0.1)
    revert_s = time.monotonic() - t0
    for ns in ("shop-dev", "shop-test", "shop-prod"):
        eventually(lambda ns=ns: holds_git(platform_repo, kubectl, ns), timeout=30)
    heal_s = time.monotonic() - t0
    argo.wait("environments")
    after = writes(kubectl, "environmentisolations")
    time.sleep(15)
    # The hand edit and Argo CD's one revert; then nothing more (no ping-pong).
    assert writes(kubectl, "environmentisolations") == after
    assert after - iso_writes == 2, after - iso_writes
    FIGURES["self_heal"] = {"reverted_s": round(revert_s, 2), "policies_follow_s": round(heal_s, 2),
                            "isolation_writes": after - iso_writes}  # fmt: skip


def test_drift_of_a_policy_is_repaired_by_the_operator_and_argo_does_not_fight(
    argo: Argo, isolations: dict[str, Any], kubectl: Kubectl, platform_repo: Repo,
    operator: Operator,
) -> None:  # fmt: skip
    argo.wait("environments")
    # The admission guard refuses a hand edit from anyone but the operator...
    res = kubectl("delete", "networkpolicy", DENY, "-n", "shop-dev", check=False)
    assert res.returncode != 0
    assert "kept by the envisolation operator" in res.stderr
    # ...so drift is simulated under the operator's own identity (a second writer with its
    # credentials, or a guard switched off).
    np_before = writes(kubectl, "networkpolicies")
    iso_before = writes(kubectl, "environmentisolations")
    repaired_before = operator.metric("envisolation_policies_repaired_total")
    t0 = time.monotonic()
    kubectl("patch", "networkpolicy", DENY, "-n", "shop-dev", "--type=merge",
            "-p", '{"spec":{"policyTypes":["Ingress"]}}', "--as", OPERATOR_SA)  # fmt: skip
    eventually(lambda: holds_git(platform_repo, kubectl, "shop-dev"), timeout=30, interval=0.1)
    repair_s = time.monotonic() - t0
    time.sleep(15)
    np_writes = writes(kubectl, "networkpolicies") - np_before
    iso_writes = writes(kubectl, "environmentisolations") - iso_before
    # The edit, one repair; Argo CD wrote nothing (the policies are not its objects, and
    # the isolation stayed Synced).
    assert np_writes == 2, np_writes
    assert iso_writes == 0, iso_writes
    assert operator.metric("envisolation_policies_repaired_total") - repaired_before == 1
    assert argo.status("environments")[:2] == ("Synced", "Healthy")
    FIGURES["drift_repair"] = {"repaired_s": round(repair_s, 2), "policy_writes": np_writes,
                               "isolation_writes": iso_writes}  # fmt: skip


# -- 6. pruning --------------------------------------------------------------------------


def drop_document(repo: Repo, path: str, name: str) -> None:
    docs = [d for d in yaml.safe_load_all((repo.work / path).read_text()) if d]
    kept = [d for d in docs if d["metadata"]["name"] != name]
    assert len(kept) == len(docs) - 1
    (repo.work / path).write_text(yaml.safe_dump_all(kept, sort_keys=False))


def sync_commit(argo: Argo, repo: Repo, message: str, health: str = "Healthy") -> None:
    rev = repo.commit(message)
    argo.refresh("environments")
    argo.wait("environments", health=health, revision=rev, timeout=120)


def test_pruning_a_namespace_and_the_isolation_from_git(
    argo: Argo, isolations: dict[str, Any], kubectl: Kubectl, platform_repo: Repo,
    operator: Operator,
) -> None:  # fmt: skip
    # A segment's namespace removed from Git: Argo CD prunes it (and with it its policies).
    drop_document(platform_repo, "isolation/namespaces.yaml", "shop-test")
    sync_commit(argo, platform_repo, "retire shop-test")
    eventually(
        lambda: kubectl("get", "namespace", "shop-test", check=False).returncode != 0, timeout=90
    )
    # The isolation removed from Git, deletionPolicy Orphan (the example's): Argo CD
    # deletes it; the operator forgets it and leaves the policies where they are.
    orphaned = managed(kubectl, "shop-dev")
    assert DENY in orphaned
    committed = yaml.safe_load((platform_repo.work / "isolation" / "environments.yaml").read_text())
    platform_repo.remove("isolation/environments.yaml")
    sync_commit(argo, platform_repo, "remove the isolation (Orphan)")
    eventually(lambda: kubectl("get", "enviso", ISO, check=False).returncode != 0, timeout=60)
    eventually(lambda: isolation_forgotten(operator, ISO), timeout=60)
    assert set(managed(kubectl, "shop-dev")) == set(orphaned)
    # Back in Git with deletionPolicy Delete: the operator adopts the policies again...
    committed["spec"]["deletionPolicy"] = "Delete"
    platform_repo.write("isolation/environments.yaml", yaml.safe_dump(committed, sort_keys=False))
    sync_commit(argo, platform_repo, "the isolation again (Delete)")
    for ns in ("shop-dev", "shop-prod"):
        eventually(lambda ns=ns: holds_git(platform_repo, kubectl, ns), timeout=60)
    # ...and removed from Git it takes its policies with it (its finalizer holds the
    # deletion until they are gone), while Argo CD waits for the deletion to finish.
    platform_repo.remove("isolation/environments.yaml")
    sync_commit(argo, platform_repo, "remove the isolation (Delete)")
    eventually(lambda: kubectl("get", "enviso", ISO, check=False).returncode != 0, timeout=60)
    for ns in ("shop-dev", "shop-prod"):
        assert managed(kubectl, ns) == {}, ns
    argo.wait("environments")


# -- 7. the Helm chart -------------------------------------------------------------------


def test_the_helm_chart_syncs_through_argo(
    argo: Argo, kubectl: Kubectl, envisolation_repo: Repo, operator: Operator,
    installed: dict[str, Any],
) -> None:  # fmt: skip
    # From the kustomize install to the chart: the first Application is deleted with its
    # resources (Argo CD's resources finalizer), then the chart's is created.
    operator.stop(signal.SIGTERM)
    kubectl("patch", "application", "envisolation", "-n", "argocd", "--type=merge",
            "-p", '{"metadata":{"finalizers":["resources-finalizer.argocd.argoproj.io"]}}')  # fmt: skip
    kubectl("delete", "application", "envisolation", "-n", "argocd", "--timeout=120s")
    eventually(
        lambda: kubectl("get", "namespace", "envisolation-system", check=False).returncode != 0,
        timeout=120,
    )
    app = application("helm-application.yaml", envisolation_repo)
    values = app["spec"]["source"]["helm"]["valuesObject"]
    values["replicaCount"] = 0  # no kubelet here (see the module's docstring)
    values["metrics"]["serviceMonitor"]["enabled"] = False  # no Prometheus Operator CRDs here
    t0 = time.monotonic()
    kubectl.apply(json.dumps(app))
    synced = argo.wait("envisolation", timeout=180)
    FIGURES["helm_sync_s"] = round(time.monotonic() - t0, 1)
    kinds = {(r["kind"], r["name"]) for r in synced["status"]["resources"]}
    for want in [
        ("CustomResourceDefinition", "environmentisolations.envisolation.io"),
        ("Deployment", "envisolation"), ("ServiceAccount", "envisolation"),
        ("ValidatingAdmissionPolicy", "envisolation-protect-segment-label"),
    ]:  # fmt: skip
        assert want in kinds, (want, sorted(kinds))
    for r in synced["status"]["resources"]:
        args = ["get", r["kind"].lower(), r["name"]] + (
            ["-n", r["namespace"]] if r.get("namespace") else []
        )
        kubectl(*args)
    # Stays Synced: nothing the chart renders is defaulted or rewritten by the API server.
    for _ in range(6):
        argo.refresh("envisolation")
        time.sleep(5)
        assert argo.status("envisolation")[:2] == ("Synced", "Healthy")
