"""What a restart's LIST costs, and where (run: .venv/bin/python bench/list_bench.py [N]).

On a fresh local cluster: 3 x N namespaces holding the policies `envisolation render`
prints for them (about 14 per 3 namespaces), the shape scale_bench.py's cluster has at
its restart. Then, in alternating rounds (ROUNDS, default 3), a paged LIST (500 a page)
of every Namespace and NetworkPolicy, four ways: the response gzip-compressed by the API
server (aiohttp's default Accept-Encoding) or not (identity), and parsed with the
standard library's json or with orjson. Each way: wall seconds, this process's CPU
seconds (decompressing and parsing), and the API server's CPU seconds (reading,
encoding and compressing), so the figure's bound is visible on a 2-core machine where
both share the cores. Results: bench/results/list-<N>.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from crd import wait_established
from envisolation.cli import render_all
from envisolation.policy.render import RenderContext
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts
from scale_bench import RESULTS, ROOT, SEGMENTS, Api, cr, proc_stats

WAYS: dict[str, tuple[str, Callable[[bytes], Any]]] = {
    "gzip+json": ("gzip, deflate", json.loads),
    "identity+json": ("identity", json.loads),
    "gzip+orjson": ("gzip, deflate", orjson.loads),
    "identity+orjson": ("identity", orjson.loads),
}


async def list_all(api: Api, encoding: str, loads: Callable[[bytes], Any]) -> int:
    assert api.session is not None
    count = 0
    for path in ("/api/v1/namespaces", "/apis/networking.k8s.io/v1/networkpolicies"):
        token = ""
        while True:
            params = {"limit": "500", **({"continue": token} if token else {})}
            async with api.session.get(f"{api.server}{path}", params=params,
                                       headers={"Accept-Encoding": encoding}) as r:  # fmt: skip
                r.raise_for_status()
                page = loads(await r.read())
            count += len(page["items"])
            token = page["metadata"].get("continue") or ""
            if not token:
                break
    return count


async def run(n: int, rounds: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="envisolation-list-"))
    hack = [sys.executable, str(ROOT / "hack" / "cluster")]
    subprocess.run([*hack, "up", "--dir", str(work / "c")], check=True, capture_output=True)
    state = json.loads((work / "c" / "state.json").read_text())
    kubeconfig = work / "c" / "kubeconfig"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def k(*a: str) -> str:
        return subprocess.run([str(Path(state["bin_dir"]) / "kubectl"), *a], env=env,
                              check=True, capture_output=True, text=True).stdout  # fmt: skip

    try:
        k("apply", "--server-side", "-k", str(ROOT / "crds"))
        wait_established(k)
        iso = EnvironmentIsolation.from_body(cr())
        docs, facts = [], []
        for i in range(3 * n):
            name, seg = f"ns-{i:05}", SEGMENTS[i % 3]
            docs.append({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": name, "labels": {"bench-baseline": seg}}})  # fmt: skip
            facts.append(NamespaceFacts.from_body(
                {"metadata": {"name": name, "labels": {"environment": seg}}}))  # fmt: skip
        policies = render_all([iso], facts, RenderContext())
        async with Api(kubeconfig, work) as api:
            await api.create_all(docs)
            await api.apply_all(policies)
            server_pid = int(state["pids"]["kube-apiserver"])
            out: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
            for _ in range(rounds):
                for way, (encoding, loads) in WAYS.items():
                    cpu0, server0 = time.process_time(), proc_stats(server_pid)[1]
                    t0 = time.monotonic()
                    objects = await list_all(api, encoding, loads)
                    out[way].append({"s": round(time.monotonic() - t0, 2),
                                     "client_cpu_s": round(time.process_time() - cpu0, 2),
                                     "server_cpu_s": round(proc_stats(server_pid)[1] - server0, 2),
                                     "objects": objects})  # fmt: skip
                    print(way, json.dumps(out[way][-1]), flush=True)
        summary = {
            way: {key: round(statistics.median(r[key] for r in rows), 2)
                  for key in ("s", "client_cpu_s", "server_cpu_s")}
            for way, rows in out.items()
        }  # fmt: skip
        return {"n": n, "namespaces": 3 * n, "policies": len(policies), "rounds": out,
                "median": summary, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    finally:
        subprocess.run([*hack, "down", "--dir", str(work / "c")], check=False, capture_output=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    result = asyncio.run(run(n, int(os.environ.get("ROUNDS", "3"))))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"list-{n}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"], indent=2))


if __name__ == "__main__":
    main()
