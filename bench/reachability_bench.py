"""Reachability at scale: W workloads and P policies, generated, analysed by the engine.

    .venv/bin/python bench/reachability_bench.py [W P]     (default: 2000 1000)

Generates a reproducible input (seeded): W pods as Deployments over 20 namespaces, and P
policies mixing default-denies, pod/namespace selectors, ports and ipBlocks. Times
`envisolation reachability` end to end (parse + analysis + output) against the baseline
of only parsing the same files (yaml.safe_load_all), measured in the same run. The
np-guard netpol-analyzer binary is timed too when NETPOL_ANALYZER points at one (its Go
module is not served by the module proxy here, so it is usually absent).
Results: bench/results/reachability-<W>x<P>.json.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def generate(w: int, p: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    namespaces = [f"ns{i:02}" for i in range(20)]
    apps = [f"app{i}" for i in range(50)]
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": n, "labels": {"env": rnd.choice(["dev", "prod"])}},
        }
        for n in namespaces
    ]
    for i in range(w):
        app = rnd.choice(apps)
        objs.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"w{i}", "namespace": rnd.choice(namespaces)},
            "spec": {"template": {"metadata": {"labels": {"app": app, "tier": rnd.choice(["a", "b", "c"])}},
                                  "spec": {"containers": [{"name": "c", "image": "i",
                                                           "ports": [{"name": "http", "containerPort": 8080}]}]}}},
        })  # fmt: skip
    for i in range(p):
        ns = rnd.choice(namespaces)
        kind = i % 5
        spec: dict[str, Any]
        if kind == 0:
            spec = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        elif kind == 1:
            spec = {"podSelector": {"matchLabels": {"app": rnd.choice(apps)}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": rnd.choice("abc")}}}],
                                 "ports": [{"port": rnd.choice([80, 443, 8080])}, {"port": "http"}]}]}  # fmt: skip
        elif kind == 2:
            spec = {"podSelector": {}, "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": rnd.choice(["dev", "prod"])}}}]}]}  # fmt: skip
        elif kind == 3:
            spec = {"podSelector": {"matchLabels": {"tier": rnd.choice("abc")}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": f"10.{rnd.randrange(256)}.0.0/16"}}],
                                "ports": [{"protocol": "UDP", "port": 53}]}]}  # fmt: skip
        else:
            spec = {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": rnd.sample(apps, 3)}]},
                    "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": rnd.choice(apps)}}}],
                                 "ports": [{"port": 9000, "endPort": 9100}]}]}  # fmt: skip
        objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"p{i}", "namespace": ns}, "spec": spec})  # fmt: skip
    return objs


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - t0, len(res.stdout.splitlines())


def main() -> None:
    w, p = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (2000, 1000)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "input.yaml"
        path.write_text(yaml.safe_dump_all(generate(w, p)))
        env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
        t0 = time.perf_counter()
        list(yaml.safe_load_all(path.read_text()))
        parse_s = time.perf_counter() - t0
        ours_s, lines = timed([sys.executable, "-m", "envisolation", "reachability", d], env)
        result: dict[str, Any] = {
            "workloads": w, "policies": p, "lines": lines,
            "envisolation_s": round(ours_s, 2), "baseline_parse_s": round(parse_s, 2),
            "ratio": round(ours_s / parse_s, 2),
            "python": platform.python_version(), "machine": platform.machine(),
        }  # fmt: skip
        other = os.environ.get("NETPOL_ANALYZER")
        if other:
            theirs_s, their_lines = timed([other, "list", "--dirpath", d], env)
            result.update(
                {"netpol_analyzer_s": round(theirs_s, 2), "netpol_analyzer_lines": their_lines}
            )
        else:
            result["netpol_analyzer_s"] = None
    out = ROOT / "bench" / "results" / f"reachability-{w}x{p}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
