"""Pictures: `verify -o dot|svg|png` and `reachability -o dot|svg|png`, checked by parsing
the graph (Graphviz's own `dot -Tjson` reads our DOT), never by comparing bytes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.incli import run_bytes as run

ROOT = Path(__file__).resolve().parents[2]
DOT = shutil.which("dot")


def graph(dot_text: bytes) -> tuple[dict[str, str], list[tuple[str, str, dict[str, Any]]]]:
    """Nodes (name -> label) and edges (tail, head, attributes) as Graphviz reads them."""
    assert DOT, "Graphviz is installed by hack/ensure-system-deps"
    out = subprocess.run([DOT, "-Tjson"], input=dot_text, capture_output=True, check=True).stdout
    g = json.loads(out)
    objs = g.get("objects", [])
    nodes = {o["name"]: o.get("label", o["name"]) for o in objs if "nodes" not in o}
    by_id = {o["_gvid"]: o["name"] for o in objs if "nodes" not in o}
    edges = [(by_id[e["tail"]], by_id[e["head"]], e) for e in g.get("edges", [])]
    return nodes, edges


@pytest.fixture
def exposed_example(tmp_path: Path) -> Path:
    """The three-segment example, its namespaces, and a tenant policy reopening dev -> test."""
    shutil.copy(ROOT / "examples" / "three-segments.yaml", tmp_path / "iso.yaml")
    nss = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s, "labels": {"environment": s}}}
           for s in ("dev", "test", "prod")]  # fmt: skip
    tenant = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "tenant-admit-dev", "namespace": "test"},
              "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                       "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"environment": "dev"}}}],
                                    "ports": [{"protocol": "TCP", "port": 80}]}]}}  # fmt: skip
    egress = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "tenant-call-test", "namespace": "dev"},
              "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"environment": "test"}}}]}]}}  # fmt: skip
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump_all([*nss, tenant, egress]))
    # the operator's policies, as `envisolation render` says it keeps them
    (tmp_path / "ns.yaml").write_text(yaml.safe_dump_all(nss))
    rendered = run(
        "render", "-f", str(tmp_path / "iso.yaml"), "--namespaces", str(tmp_path / "ns.yaml")
    )
    assert rendered.returncode == 0, rendered.stderr
    (tmp_path / "managed.yaml").write_bytes(rendered.stdout)
    return tmp_path


def test_verify_dot_has_segments_declared_paths_and_red_exposures(exposed_example: Path) -> None:
    res = run("verify", "--from", str(exposed_example), "-o", "dot")
    assert res.returncode == 1, res.stderr  # an exposure: the exit code says so in every format
    nodes, edges = graph(res.stdout)
    assert sorted(nodes) == ["environments/dev", "environments/prod", "environments/test"]
    pairs = {(a.split("/")[1], b.split("/")[1]): e for a, b, e in edges}
    declared = {k for k, e in pairs.items() if e.get("color") != "red"}
    assert {("dev", "dev"), ("test", "test"), ("prod", "prod"), ("test", "prod")} <= declared
    assert "TCP 8443" in pairs[("test", "prod")]["label"]
    red = [(a, b, e) for a, b, e in edges if e.get("color") == "red"]
    assert [(a, b) for a, b, _ in red] == [("environments/dev", "environments/test")]
    assert "tenant-admit-dev" in red[0][2]["label"] and "TCP 80" in red[0][2]["label"]
    assert ("test", "dev") not in pairs and ("prod", "dev") not in pairs  # isolated: no edge


@pytest.mark.parametrize(("fmt", "magic"), [("svg", b"<svg"), ("png", b"\x89PNG")])
def test_verify_renders_the_example_as_an_image(
    exposed_example: Path, tmp_path: Path, fmt: str, magic: bytes
) -> None:
    res = run("verify", "--from", str(exposed_example), "-o", fmt)
    assert res.returncode == 1, res.stderr
    image = tmp_path / f"example.{fmt}"
    image.write_bytes(res.stdout)
    assert image.stat().st_size > 1000 and magic in res.stdout[:400]


def test_reachability_dot_groups_workloads_by_namespace(tmp_path: Path) -> None:
    def dep(ns: str, name: str) -> dict[str, Any]:
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
                "spec": {"template": {"metadata": {"labels": {"app": name}}}}}  # fmt: skip

    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "only-web", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                  "ports": [{"protocol": "TCP", "port": 5432}]}]}}  # fmt: skip
    (tmp_path / "in.yaml").write_text(
        yaml.safe_dump_all([dep("shop", "web"), dep("shop", "db"), dep("ops", "cron"), deny])
    )
    res = run("reachability", str(tmp_path), "-o", "dot")
    assert res.returncode == 0, res.stderr
    text = res.stdout.decode()
    assert "subgraph cluster_ns_0" in text and 'label="ops"' in text and 'label="shop"' in text
    nodes, edges = graph(res.stdout)
    assert {"shop/web[Deployment]", "shop/db[Deployment]", "ops/cron[Deployment]"} <= set(nodes)
    into_db = {(a, e["label"]) for a, b, e in edges if b == "shop/db[Deployment]"}
    assert into_db == {("shop/web[Deployment]", "TCP 5432")}


def test_without_graphviz_the_error_says_how_to_install_it(
    exposed_example: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    res = run("verify", "--from", str(exposed_example), "-o", "svg", path=str(bare))
    assert res.returncode == 2
    assert b"install Graphviz" in res.stderr and b"apt-get install graphviz" in res.stderr


def test_verify_lists_host_network_pods_as_not_isolatable(exposed_example: Path) -> None:
    hosted = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node-agent", "namespace": "dev"},
         "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "i"}]}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "exporter", "namespace": "prod"},
         "spec": {"template": {"spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "i"}]}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "elsewhere", "namespace": "kube-system"},
         "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "i"}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "normal", "namespace": "dev"},
         "spec": {"hostNetwork": False, "containers": [{"name": "c", "image": "i"}]}},
    ]  # fmt: skip
    (exposed_example / "hosted.yaml").write_text(yaml.safe_dump_all(hosted))
    res = run("verify", "--from", str(exposed_example), "-o", "json")
    report = json.loads(res.stdout)[0]
    assert report["notIsolatable"] == ["dev: dev/node-agent[Pod]", "prod: prod/exporter[DaemonSet]"]
    text = run("verify", "--from", str(exposed_example)).stdout.decode()
    assert "2 not isolatable (hostNetwork: no NetworkPolicy applies to them):" in text
    assert "  dev: dev/node-agent[Pod]" in text


def test_reachability_dot_text() -> None:
    """The DOT itself, for a small input: clusters per namespace in name order, outside
    ranges as ellipses, one edge per row in the order given, every string quoted."""
    from envisolation.analysis.graph import quote, reachability_dot

    rows = [
        ("shop/web[Deployment]", "shop/db[Deployment]", "TCP 5432"),
        ("0.0.0.0-255.255.255.255[External]", "shop/web[Deployment]", "TCP 443"),
        ("ops/cron[CronJob]", "shop/db[Deployment]", "All Connections"),
    ]
    assert reachability_dot(rows) == "\n".join([
        "digraph reachability {",
        '  rankdir="LR";',
        '  node [shape="box", style="rounded"];',
        "  subgraph cluster_ns_0 {",
        '    label="ops";',
        '    "ops/cron[CronJob]" [label="cron[CronJob]"];',
        "  }",
        "  subgraph cluster_ns_1 {",
        '    label="shop";',
        '    "shop/db[Deployment]" [label="db[Deployment]"];',
        '    "shop/web[Deployment]" [label="web[Deployment]"];',
        "  }",
        '  "0.0.0.0-255.255.255.255[External]" [shape="ellipse", label="0.0.0.0-255.255.255.255"];',
        '  "shop/web[Deployment]" -> "shop/db[Deployment]" [label="TCP 5432"];',
        '  "0.0.0.0-255.255.255.255[External]" -> "shop/web[Deployment]" [label="TCP 443"];',
        '  "ops/cron[CronJob]" -> "shop/db[Deployment]" [label="All Connections"];',
        "}",
        "",
    ])  # fmt: skip
    assert reachability_dot([]) == (
        'digraph reachability {\n  rankdir="LR";\n  node [shape="box", style="rounded"];\n}\n'
    )
    assert quote('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'
