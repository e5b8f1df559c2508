"""Pure-core benchmark: render + plan per namespace, against a baseline in the same run.

    .venv/bin/python bench/render_bench.py [N ...]        (default: 100 1000 5000)

For N namespaces over three segments it times (a) deciding and planning every namespace
from scratch (what a full resync costs, with no API I/O), (b) planning again against the
result (the steady state), and (c) the baseline: serialising the rendered objects to
JSON once, i.e. the least work any client sending them would do. Ratios are (a)/(c) and
(b)/(c). Results go to bench/results/render-<N>.json.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

import yaml  # noqa: E402

from envisolation.policy.plan import live_after, plan_namespace  # noqa: E402
from envisolation.policy.render import RenderContext, decide  # noqa: E402
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts  # noqa: E402


def best_of(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(n: int) -> dict[str, object]:
    iso = EnvironmentIsolation.from_body(
        yaml.safe_load((ROOT / "examples/three-segments.yaml").read_text())
    )
    segs = ["dev", "test", "prod"]
    namespaces = [
        NamespaceFacts.from_body(
            {"metadata": {"name": f"ns-{i}", "labels": {"environment": segs[i % 3]}}}
        )
        for i in range(n)
    ]
    ctx = RenderContext(as_enforce=True)
    decisions = [decide(ns, [iso], ctx) for ns in namespaces]
    lives = [live_after(plan_namespace(d, [], {iso.name}), []) for d in decisions]

    def full() -> None:
        for ns in namespaces:
            plan_namespace(decide(ns, [iso], ctx), [], {iso.name})

    def steady() -> None:
        for ns, live in zip(namespaces, lives, strict=True):
            assert plan_namespace(decide(ns, [iso], ctx), live, {iso.name}).empty

    def baseline() -> None:
        for d in decisions:
            json.dumps(d.desired)

    t_full, t_steady, t_base = best_of(full), best_of(steady), best_of(baseline)
    return {
        "n": n,
        "policies": sum(len(d.desired) for d in decisions),
        "full_plan_s": round(t_full, 4),
        "steady_plan_s": round(t_steady, 4),
        "baseline_json_s": round(t_base, 4),
        "ratio_full": round(t_full / t_base, 2),
        "ratio_steady": round(t_steady / t_base, 2),
        "per_namespace_us": round(t_full / n * 1e6, 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000, 5000]
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    cols = ("N", "policies", "full s", "steady s", "json s", "full/json", "steady/json")
    widths = (6, 9, 8, 9, 8, 9, 11)
    print(" ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True)))
    for n in sizes:
        r = run(n)
        (out / f"render-{n}.json").write_text(json.dumps(r, indent=2) + "\n")
        print(
            f"{n:>6} {r['policies']:>9} {r['full_plan_s']:>8} {r['steady_plan_s']:>9} "
            f"{r['baseline_json_s']:>8} {r['ratio_full']:>9} {r['ratio_steady']:>11}"
        )


if __name__ == "__main__":
    main()
