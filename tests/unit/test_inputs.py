"""`envisolation reachability` reads what clusters and kubectl print, and names endpoints
as netpol-analyzer's `list` does. Fixtures are written here, in the forms users save:
typed API lists whose items carry no kind, `kubectl get -o yaml` Lists, multi-document
streams, and pods owned by workloads that are or are not in the input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from envisolation.analysis import reachability as r
from tests.unit import incli

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return incli.run(*args)


def pod(ns: str, name: str, owner: tuple[str, str] | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": owner[0], "name": owner[1],
                                    "uid": "u", "controller": True}]  # fmt: skip
    return {"metadata": meta, "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"podIP": "10.0.0.1", "hostIP": "10.1.0.1"}}  # fmt: skip


def deny_all(ns: str) -> dict[str, Any]:
    return {"metadata": {"name": "deny", "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}  # fmt: skip


def listed(tmp_path: Path, *docs: Any) -> list[dict[str, str]]:
    f = tmp_path / "in.json"
    f.write_text("\n".join(json.dumps(d) for d in docs) if len(docs) > 1 else json.dumps(docs[0]))
    res = run("reachability", "-o", "json", str(f))
    assert res.returncode == 0, res.stderr
    return list(json.loads(res.stdout))


def test_typed_lists_give_their_items_a_kind(tmp_path: Path) -> None:
    """A 50-pod PodList as the API returns it (items without kind) is 50 pods, not nothing."""
    pods = {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
            "items": [pod("shop", f"p{i:02}", app="web") for i in range(50)]}  # fmt: skip
    (tmp_path / "pods.json").write_text(json.dumps(pods))
    (tmp_path / "pols.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList", "items": [deny_all("shop")]}))  # fmt: skip
    (tmp_path / "ns.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "NamespaceList", "items": [{"metadata": {"name": "shop"}}]}))  # fmt: skip
    res = run("reachability", "-o", "json", str(tmp_path))
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    names = {x["src"] for x in rows} | {x["dst"] for x in rows}
    assert {f"shop/p{i:02}[Pod]" for i in range(50)} <= names
    # the NetworkPolicyList's policy was read: no pod reaches another inside shop
    assert not [x for x in rows if x["src"].startswith("shop/") and x["dst"].startswith("shop/")]
    assert res.stderr == ""


def test_a_deployment_list_and_a_kubectl_list_are_read(tmp_path: Path) -> None:
    dep = {"metadata": {"name": "web", "namespace": "shop"},
           "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": "i"}]}}}}  # fmt: skip
    kubectl = {"apiVersion": "v1", "kind": "List",
               "items": [{"apiVersion": "v1", "kind": "Pod", **pod("shop", "solo")}]}  # fmt: skip
    rows = listed(
        tmp_path, {"apiVersion": "apps/v1", "kind": "DeploymentList", "items": [dep]}, kubectl
    )
    names = {x["src"] for x in rows} | {x["dst"] for x in rows}
    assert {"shop/web[Deployment]", "shop/solo[Pod]"} <= names


def test_endpoints_are_named_as_netpol_analyzer_names_them() -> None:
    objs = [
        {"kind": "Pod", **pod("a", "static-etcd", owner=("Node", "node-1"))},
        {"kind": "Pod", **pod("a", "bare")},
        {"kind": "Pod", **pod("a", "ds-x1", owner=("DaemonSet", "agent"))},  # DaemonSet not in the input
        {"kind": "Pod", **pod("a", "orphan-rs-x", owner=("ReplicaSet", "lonely-5d9"))},  # RS not in the input
        {"kind": "Pod", **pod("a", "web-5d9-x", owner=("ReplicaSet", "web-5d9"))},
        {"kind": "ReplicaSet", "metadata": {"name": "web-5d9", "namespace": "a", "ownerReferences": [
            {"kind": "Deployment", "name": "web", "controller": True}]},
         "spec": {"template": {"metadata": {"labels": {}}}}},
        {"kind": "Pod", **pod("a", "job-x", owner=("Job", "nightly-28"))},
        {"kind": "Job", "metadata": {"name": "nightly-28", "namespace": "a", "ownerReferences": [
            {"kind": "CronJob", "name": "nightly", "controller": True}]},
         "spec": {"template": {"metadata": {"labels": {}}}}},
    ]  # fmt: skip
    cluster, _ = r.build(objs)
    assert [str(w) for w in cluster.workloads] == [
        "a/agent[DaemonSet]", "a/bare[Pod]", "a/lonely-5d9[ReplicaSet]", "a/nightly[CronJob]",
        "a/static-etcd[Pod]", "a/web[Deployment]",
    ]  # fmt: skip
    # every pair is listed (no policies): none dropped for its naming
    assert len(r.connlist(cluster)) >= 6 * 5


def test_a_file_with_nothing_readable_warns_and_no_workload_at_all_exits_2(tmp_path: Path) -> None:
    (tmp_path / "pods.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", **pod("x", "p")})
    )
    (tmp_path / "notes.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                                         "metadata": {"name": "c"}}))  # fmt: skip
    (tmp_path / "empty.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "PodList", "items": []})
    )
    res = run("reachability", str(tmp_path))
    assert res.returncode == 0
    assert (
        f"warning: {tmp_path / 'notes.yaml'}: no Namespace, NetworkPolicy, Pod or workload found"
        in res.stderr
    )
    assert f"warning: {tmp_path / 'empty.yaml'}:" in res.stderr
    assert "pods.yaml" not in res.stderr
    (tmp_path / "pods.yaml").unlink()
    res = run("reachability", str(tmp_path))
    assert res.returncode == 2
    assert "no Pod or workload found, nothing to analyse" in res.stderr
