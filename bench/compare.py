"""The rollout benchmark of two revisions, in alternating rounds on the same machine.

    make bench-compare BASE=REV [N=1000] [ROUNDS=2]
    .venv/bin/python bench/compare.py BASE [N] [ROUNDS] [THIS]
                                           (default N=1000, ROUNDS=2, THIS=HEAD)

Runs bench/scale_bench.py of the revisions BASE and THIS (git worktrees of the commits,
so editing the tree meanwhile changes nothing) alternately (base, this, base, this, ...),
each round on a fresh local cluster, and
writes every round plus the medians and spreads of the figures that must not move to
bench/results/compare-<BASE>-<N>.json. BENCH_IDLE_S and BENCH_LATENCY_S (default 30 and
15 here) shorten the idle and relabel phases, which this comparison does not need long.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = (
    "convergence_s", "baseline_ssa_s", "baseline_ssa_after_s", "ratio", "writes_per_namespace",
    "idle_writes", "restart_writes", "relist_writes", "reapply_writes", "status_writes",
    "rss_mib", "convergence_cpu_s", "latency_p99_s",
)  # fmt: skip


def run(tree: Path, n: int, results: Path) -> dict[str, object]:
    since = time.time()
    env = {
        **os.environ,
        "BENCH_IDLE_S": os.environ.get("BENCH_IDLE_S", "30"),
        "BENCH_LATENCY_S": os.environ.get("BENCH_LATENCY_S", "15"),
        "BENCH_RESULTS": str(results),  # honoured by this tree; a base tree writes its own
    }
    # The result file is written before the plot: a failed plot does not lose the round.
    subprocess.run([sys.executable, str(tree / "bench" / "scale_bench.py"), str(n)], env=env,
                   check=False, stdout=subprocess.DEVNULL)  # fmt: skip
    for out in (results / f"scale-{n}.json", tree / "bench" / "results" / f"scale-{n}.json"):
        if out.exists() and out.stat().st_mtime > since:
            return dict(json.loads(out.read_text()))
    raise RuntimeError(f"{tree}: no result for N={n}")


def summary(rounds: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    out = {}
    for key in KEYS:
        values = [float(r[key]) for r in rounds if isinstance(r.get(key), int | float)]  # type: ignore[arg-type]
        if values:
            out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def main() -> None:
    base = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", base],
                         check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    this = sys.argv[4] if len(sys.argv) > 4 else "HEAD"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", this],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"base": Path(tmp) / "base", "this": Path(tmp) / "this"}
        for side, commit in (("base", rev), ("this", head)):
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach",
                            str(trees[side]), commit], check=True)  # fmt: skip
        results: dict[str, list[dict[str, object]]] = {"base": [], "this": []}
        try:
            for i in range(rounds):
                for side, where in trees.items():
                    label = rev if side == "base" else head
                    print(f"== round {i + 1}/{rounds}: {side} ({label})", flush=True)
                    r = run(where, n, Path(tmp) / f"results-{side}")
                    results[side].append(r)
                    print("   " + ", ".join(f"{k}={r.get(k)}" for k in KEYS if k in r), flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               check=False)  # fmt: skip
    report = {
        "n": n, "base": rev, "this": head, "rounds": rounds,
        "base_summary": summary(results["base"]), "this_summary": summary(results["this"]),
        "base_rounds": results["base"], "this_rounds": results["this"],
    }  # fmt: skip
    out = ROOT / "bench" / "results" / f"compare-{rev}-{n}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'figure':24} {'base median [min-max]':>28} {'this median [min-max]':>28}")
    for key in KEYS:
        b, t = report["base_summary"].get(key), report["this_summary"].get(key)  # type: ignore[union-attr]
        if b and t:
            print(f"{key:24} {b['median']:>10.3f} [{b['min']:.3f}-{b['max']:.3f}]"
                  f" {t['median']:>10.3f} [{t['min']:.3f}-{t['max']:.3f}]")  # fmt: skip
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
