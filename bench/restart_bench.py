"""Restart at scale: from process start to the first complete pass (make bench-restart [N=10000]).

The window in which drift is not repaired after an upgrade or a crash. On a fresh local
cluster of the shape scale_bench.py's has at its restart: N namespaces over dev/test/prod
that the operator rolls out once, and 2 x N baseline namespaces holding the same
policies under another field manager (foreign, and out of every segment: listed, not
kept). Then the operator is stopped, and in alternating rounds (ROUNDS, default 3):

  baseline  a bare asyncio client LISTs every Namespace and NetworkPolicy, 500 a page,
            and parses each page: what any controller must read before it can plan;
  operator  `envisolation run` is started; timed until its own metrics show the first
            reconcile pass (a full one: the schedule starts with every namespace due),
            with the policy writes in that window (apiserver_request_total; want 0), and
            its log's "listed the cluster" line (seconds spent listing each kind).

Results: bench/results/restart-<N>.json: every round, the medians with min-max of both
and of their ratio. BENCH_PROFILE=<path>: py-spy samples the first restart for 60 s
(collapsed stacks; `pip install py-spy` first).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crd import free_port, wait_established
from envisolation.cli import render_all
from envisolation.policy.render import RenderContext
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts
from scale_bench import RESULTS, ROOT, SEGMENTS, Api, cr, passes, proc_stats

PAGE = 500  # the operator's LIST page (paging.LIST_PAGE)
PROFILE = os.environ.get("BENCH_PROFILE")  # a path: py-spy samples the first restart


async def bare_list(api: Api) -> tuple[float, int]:
    """Seconds to LIST and parse every Namespace and NetworkPolicy, and how many."""
    assert api.session is not None
    t0, count = time.monotonic(), 0
    for path in ("/api/v1/namespaces", "/apis/networking.k8s.io/v1/networkpolicies"):
        token = ""
        while True:
            params = {"limit": str(PAGE), **({"continue": token} if token else {})}
            async with api.session.get(f"{api.server}{path}", params=params) as r:
                r.raise_for_status()
                page = json.loads(await r.read())
            count += len(page["items"])
            token = page["metadata"].get("continue") or ""
            if not token:
                break
    return time.monotonic() - t0, count


def listing(log: Path) -> dict[str, Any]:
    """The operator's "listed the cluster" line (JSON logs), or {}."""
    for line in log.read_text().splitlines():
        if '"listed the cluster"' in line:
            entry = json.loads(line)
            return {k: entry[k] for k in ("namespaces", "managed_policies",
                                          "foreign_policies_held", "namespaces_s", "policies_s")}  # fmt: skip
    return {}


async def run(n: int, rounds: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="envisolation-restart-"))
    hack = [sys.executable, str(ROOT / "hack" / "cluster")]
    subprocess.run([*hack, "up", "--dir", str(work / "c")], check=True, capture_output=True)
    state = json.loads((work / "c" / "state.json").read_text())
    kubeconfig = work / "c" / "kubeconfig"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def k(*a: str, stdin: str | None = None) -> str:
        return subprocess.run([str(Path(state["bin_dir"]) / "kubectl"), *a], input=stdin,
                              env=env, check=True, capture_output=True, text=True).stdout  # fmt: skip

    op: subprocess.Popen[bytes] | None = None
    port = free_port()
    argv = [sys.executable, "-m", "envisolation", "run", "--liveness", "", "--log-format",
            "json", "--metrics-bind", f"127.0.0.1:{port}"]  # fmt: skip
    op_env = {**env, "PYTHONPATH": str(ROOT / "operator"), "POD_NAME": "bench-restart"}

    def start(log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(argv, env=op_env, stdout=out, stderr=subprocess.STDOUT)

    try:
        k("apply", "--server-side", "-k", str(ROOT / "crds"))
        wait_established(k)
        body = cr()
        iso = EnvironmentIsolation.from_body(body)
        docs, base = [], []
        for g, prefix in (("op", "env"), ("a", "base-a"), ("c", "base-c")):
            for i in range(n):
                name, seg = f"{prefix}-{i:05}", SEGMENTS[i % 3]
                labels = {"environment": seg} if g == "op" else {"bench-baseline": seg}
                docs.append({"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": name, "labels": labels}})  # fmt: skip
                if g != "op":
                    base.append(NamespaceFacts.from_body(
                        {"metadata": {"name": name, "labels": {"environment": seg}}}))  # fmt: skip
        foreign = render_all([iso], base, RenderContext())
        for p in foreign:
            p["metadata"]["labels"] = {**p["metadata"]["labels"],
                                       "app.kubernetes.io/managed-by": "bench-baseline"}  # fmt: skip
        async with Api(kubeconfig, work) as api:
            await api.create_all(docs)
            await api.apply_all(foreign)
            k("apply", "-f", "-", stdin=json.dumps(body))
            op = start(work / "rollout.log")  # the rollout the restarts will find done
            t0 = time.monotonic()
            while True:
                st = json.loads(k("get", "enviso", "environments", "-o", "json")).get("status", {})
                if st.get("namespaces") == n and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", [])
                ):
                    break
                if time.monotonic() - t0 > 1800 or op.poll() is not None:
                    raise RuntimeError("the first rollout did not finish")
                await asyncio.sleep(1)
            rollout_s = time.monotonic() - t0
            await asyncio.sleep(5)
            op.send_signal(signal.SIGTERM)
            op.wait(timeout=30)
            out_rounds = []
            for r in range(1, rounds + 1):
                bare_s, objects = await bare_list(api)
                w0 = await api.writes()
                log = work / f"restart-{r}.log"
                started = time.monotonic()
                op = start(log)
                if PROFILE and r == 1:  # py-spy samples of the first restart, collapsed stacks
                    subprocess.Popen(
                        [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(op.pid),
                         "-d", "60", "-r", "100", "--format", "raw", "-o", PROFILE, "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                while await asyncio.to_thread(passes, port) < 1:
                    if op.poll() is not None or time.monotonic() - started > 600:
                        raise RuntimeError(f"no first pass; see {log}")
                    await asyncio.sleep(0.1)
                ready_s = time.monotonic() - started
                writes = (await api.writes())["policies"] - w0["policies"]
                rss = proc_stats(op.pid)[0]
                op.send_signal(signal.SIGTERM)
                op.wait(timeout=30)
                row = {"round": r, "bare_list_s": round(bare_s, 2), "objects": objects,
                       "restart_ready_s": round(ready_s, 2), "writes": writes,
                       "ratio": round(ready_s / bare_s, 3), "rss_mib": round(rss, 1),
                       "listing": listing(log)}  # fmt: skip
                out_rounds.append(row)
                print(json.dumps(row), flush=True)

        def summary(key: str) -> dict[str, float]:
            vals = [float(x[key]) for x in out_rounds]
            return {"median": round(statistics.median(vals), 2), "min": min(vals), "max": max(vals)}

        return {
            "n": n, "rounds": out_rounds, "first_rollout_s": round(rollout_s, 1),
            "restart_ready_s": summary("restart_ready_s"), "bare_list_s": summary("bare_list_s"),
            "ratio": summary("ratio"), "writes": sum(x["writes"] for x in out_rounds),
            "cluster": {"namespaces": 3 * n, "policies": len(foreign) + len(foreign) // 2},
            "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=False,
                                     capture_output=True, text=True).stdout.strip(),
        }  # fmt: skip
    finally:
        if op is not None and op.poll() is None:
            op.kill()
        subprocess.run([*hack, "down", "--dir", str(work / "c")], check=False, capture_output=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    result = asyncio.run(run(n, int(os.environ.get("ROUNDS", "3"))))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"restart-{n}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
