"""Operator memory and CPU at N namespaces, on a fresh local cluster (sizes the Deployment).

    .venv/bin/python bench/memory_bench.py [N ...]        (default: 100 1000)

For each N: a fresh cluster, N namespaces labelled over three segments, the operator
started, the three-segment example applied with every segment enforced; when status says
Ready for N namespaces it reads the operator's RSS and CPU seconds from /proc. Baseline,
same run: the RSS of a bare Python process that imports the same libraries (kopf,
kubernetes) and does nothing, the floor any Python operator pays. Results go to
bench/results/memory-<N>.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from crd import wait_established

ROOT = Path(__file__).resolve().parent.parent


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


def baseline_rss() -> float:
    code = "import kopf, kubernetes, structlog, prometheus_client, time; time.sleep(30)"
    p = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(4)
    rss, _ = proc_stats(p.pid)
    p.kill()
    p.wait()
    return rss


def run(n: int) -> dict[str, object]:
    d = Path(tempfile.mkdtemp(prefix="envisolation-bench-"))
    cluster = [sys.executable, str(ROOT / "hack" / "cluster")]
    subprocess.run([*cluster, "up", "--dir", str(d)], check=True, capture_output=True)
    bins = Path(json.loads((d / "state.json").read_text())["bin_dir"])
    env = {**os.environ, "KUBECONFIG": str(d / "kubeconfig")}

    def kubectl(*a: str, stdin: str | None = None) -> str:
        return subprocess.run(
            [str(bins / "kubectl"), *a],
            input=stdin,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    op = None
    try:
        kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
        wait_established(kubectl)
        segs = ("dev", "test", "prod")
        docs = [
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": f"bench-{i:05}", "labels": {"environment": segs[i % 3]}}}
            for i in range(n)
        ]  # fmt: skip
        chunks = [docs[i : i + 200] for i in range(0, n, 200)]
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(lambda c: kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(c)), chunks)
            )
        op = subprocess.Popen(
            [sys.executable, "-m", "envisolation", "run", "--liveness", "", "--metrics-bind", ""],
            env={**env, "PYTHONPATH": str(ROOT / "operator")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)
        idle_rss, _ = proc_stats(op.pid)
        cr = yaml.safe_load((ROOT / "examples" / "three-segments.yaml").read_text())
        for s in cr["spec"]["segments"]:
            s.pop("enforcement", None)
            s.pop("namespaceSelector", None)
        t0 = time.monotonic()
        kubectl("apply", "-f", "-", stdin=json.dumps(cr))
        while True:
            st = json.loads(kubectl("get", "enviso", "environments", "-o", "json")).get(
                "status", {}
            )
            ok = any(
                c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", [])
            )
            if ok and st.get("namespaces") == n:
                break
            if time.monotonic() - t0 > 1800:
                raise TimeoutError("not Ready within 30 minutes")
            time.sleep(0.5)
        converged = time.monotonic() - t0
        time.sleep(5)
        rss, cpu = proc_stats(op.pid)
        return {
            "n": n,
            "policies": st.get("policies"),
            "ready_s": round(converged, 1),
            "rss_idle_before_cr_mib": round(idle_rss, 1),
            "rss_mib": round(rss, 1),
            "cpu_s": round(cpu, 1),
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
    finally:
        if op is not None:
            op.terminate()
            op.wait(timeout=20)
        subprocess.run([*cluster, "down", "--dir", str(d)], check=False, capture_output=True)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000]
    floor = baseline_rss()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    print(f"baseline: bare python + kopf + kubernetes = {floor:.1f} MiB RSS")
    print(f"{'N':>6} {'policies':>9} {'ready s':>8} {'rss MiB':>8} {'x floor':>8} {'cpu s':>7}")
    for n in sizes:
        r = run(n)
        r["baseline_rss_mib"] = round(floor, 1)
        r["ratio_rss"] = round(float(r["rss_mib"]) / floor, 2)  # type: ignore[arg-type]
        (out / f"memory-{n}.json").write_text(json.dumps(r, indent=2) + "\n")
        row = (n, r["policies"], r["ready_s"], r["rss_mib"], r["ratio_rss"], r["cpu_s"])
        print(" ".join(f"{v!s:>{w}}" for v, w in zip(row, (6, 9, 8, 8, 8, 7), strict=True)))


if __name__ == "__main__":
    main()
