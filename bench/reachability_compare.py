"""`envisolation reachability` of two revisions on one generated input, alternating rounds.

    .venv/bin/python bench/reachability_compare.py BASE [ROUNDS] [W P] [THIS]
                                           (default ROUNDS=4, W=2000, P=1000, THIS=HEAD)

The input is bench/reachability_bench.py's (seeded: W Deployments over 20 namespaces, P
policies with IPv4 ipBlocks only), written once. Each round times the baseline (only
parsing the YAML, in this process) and then the command of BASE and of THIS (git worktrees
of the commits, so the tree can change meanwhile), alternating base, this, base, this, ...
Reports each side's median seconds with min-max and the ratio to the baseline of the
same round; checks both sides printed the same lines. Writes
bench/results/reachability-<W>x<P>-compare-<BASE>.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from reachability_bench import generate  # noqa: E402


def rev(name: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", name],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip


def timed(tree: Path, inputs: Path) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "operator")}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "envisolation", "reachability", str(inputs)],
                         capture_output=True, text=True, env=env, check=True)  # fmt: skip
    return time.perf_counter() - t0, hashlib.sha256(res.stdout.encode()).hexdigest()


def main() -> None:
    base = rev(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    w, p = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (2000, 1000)
    this = rev(sys.argv[5] if len(sys.argv) > 5 else "HEAD")
    runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    digests: dict[str, set[str]] = {"base": set(), "this": set()}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        (inputs / "input.yaml").write_text(yaml.safe_dump_all(generate(w, p)))
        trees = {"base": Path(tmp) / "base", "this": Path(tmp) / "this"}
        for side, commit in (("base", base), ("this", this)):
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach",
                            str(trees[side]), commit], check=True)  # fmt: skip
        try:
            for i in range(rounds):
                for side in ("base", "this"):
                    t0 = time.perf_counter()
                    list(yaml.safe_load_all((inputs / "input.yaml").read_text()))
                    parse_s = time.perf_counter() - t0
                    took, digest = timed(trees[side], inputs)
                    digests[side].add(digest)
                    runs[side].append({"envisolation_s": round(took, 2),
                                       "baseline_parse_s": round(parse_s, 2),
                                       "ratio": round(took / parse_s, 2)})  # fmt: skip
                    print(f"round {i + 1}/{rounds} {side}: {runs[side][-1]}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False)  # fmt: skip
    summary = {
        side: {key: {"median": statistics.median(r[key] for r in rs),
                     "min": min(r[key] for r in rs), "max": max(r[key] for r in rs)}
               for key in ("envisolation_s", "ratio")}
        for side, rs in runs.items()
    }  # fmt: skip
    report = {
        "workloads": w, "policies": p, "base": base, "this": this,
        "order": f"base, this, base, this, ... ({rounds} rounds each)",
        "same_output": digests["base"] == digests["this"] and len(digests["base"]) == 1,
        "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rounds": runs, "summary": summary,
    }  # fmt: skip
    out = ROOT / "bench" / "results" / f"reachability-{w}x{p}-compare-{base}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for side in ("base", "this"):
        s = summary[side]
        print(f"{side} ({base if side == 'base' else this}): "
              f"{s['envisolation_s']['median']:.2f} s [{s['envisolation_s']['min']:.2f}-"
              f"{s['envisolation_s']['max']:.2f}], ratio {s['ratio']['median']:.2f} "
              f"[{s['ratio']['min']:.2f}-{s['ratio']['max']:.2f}]")  # fmt: skip
    print(f"same output: {report['same_output']}; wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
