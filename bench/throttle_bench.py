"""The rollout under API Priority and Fairness throttling (run: make bench-throttle [N=240]).

On a fresh local cluster, a FlowSchema puts the operator's ServiceAccount on a priority
level of its own with the fewest seats the server gives (3) and a one-request queue, so
that most requests sent at once are answered 429 with Retry-After. In alternating rounds
(ROUNDS, default 3), each into fresh namespaces of the same shape:

  baseline  a bare asyncio client with the same ServiceAccount's token (so the same
            FlowSchema) server-side-applies the policies `envisolation render` prints,
            16 requests at a time, and sends a throttled request again after its
            Retry-After: the least a client can do and still be correct;
  operator  `envisolation run` (the same token) gets an EnvironmentIsolation for the
            round's namespaces: time until all their policies exist.

Both are timed by the bench's own admin client (system:masters is exempt from APF), which
polls the policies every 0.25 s; after each round it checks that every namespace holds
exactly the rendered policies (zero lost work) and that the operator never stopped
answering its liveness probe. Results: bench/results/throttle-<N>.json with every round,
the medians and their min-max (throttled_s, throttled_baseline_s, throttled_ratio,
throttled_429s).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from crd import free_port, wait_established

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT))

from tests.api.test_throttling import ONE_SEAT  # noqa: E402  (the same priority level)

from envisolation.cli import render_all  # noqa: E402
from envisolation.policy.render import RenderContext  # noqa: E402
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts  # noqa: E402

SEGMENTS = ("dev", "test", "prod")
CONCURRENCY = 16  # the operator's most in flight (client.CONNECTIONS)
RESULTS = Path(os.environ.get("BENCH_RESULTS") or ROOT / "bench" / "results")


class Writer:
    """The baseline: SSA with the ServiceAccount's token, Retry-After honoured per request."""

    def __init__(self, server: str, token: str, ca: Path) -> None:
        self.server = server
        self.headers = {"Authorization": f"Bearer {token}"}
        self.ssl = ssl.create_default_context(cafile=str(ca))
        self.throttled = 0
        self.max_retry_after = 0.0

    async def apply_all(self, objs: list[dict[str, Any]]) -> None:
        sem = asyncio.Semaphore(CONCURRENCY)
        conn = aiohttp.TCPConnector(ssl=self.ssl, limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=conn, headers=self.headers) as session:

            async def one(obj: dict[str, Any]) -> None:
                meta = obj["metadata"]
                url = (f"{self.server}/apis/networking.k8s.io/v1/namespaces/{meta['namespace']}"
                       f"/networkpolicies/{meta['name']}")  # fmt: skip
                while True:
                    async with sem, session.patch(
                        url, params={"fieldManager": "bench-baseline", "force": "true"},
                        data=json.dumps(obj), headers={"Content-Type": "application/apply-patch+yaml"},
                    ) as r:  # fmt: skip
                        await r.read()
                        if r.status != 429:
                            r.raise_for_status()
                            return
                        self.throttled += 1
                        after = float(r.headers.get("Retry-After", "1"))
                        self.max_retry_after = max(self.max_retry_after, after)
                    await asyncio.sleep(after)

            await asyncio.gather(*(one(o) for o in objs))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 240
    rounds = int(os.environ.get("ROUNDS", "3"))
    work = Path(tempfile.mkdtemp(prefix="envisolation-throttle-"))
    hack = [sys.executable, str(ROOT / "hack" / "cluster")]
    subprocess.run([*hack, "up", "--dir", str(work / "c")], check=True, capture_output=True)
    state = json.loads((work / "c" / "state.json").read_text())
    kubeconfig = work / "c" / "kubeconfig"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    kubectl = str(Path(state["bin_dir"]) / "kubectl")

    def k(*a: str, stdin: str | None = None) -> str:
        return subprocess.run(
            [kubectl, *a], input=stdin, env=env, check=True, capture_output=True, text=True
        ).stdout

    op: subprocess.Popen[bytes] | None = None
    try:
        k("apply", "--server-side", "-k", str(ROOT / "crds"))
        wait_established(k)
        for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
            k("apply", "-f", str(ROOT / "manifests" / "base" / name))

        def level(tag: str) -> None:
            """A fresh priority level (and its FlowSchema) for the next phase: APF keeps a
            Retry-After per priority level, which doubles while the level keeps dropping
            requests (up to 32 s) and comes down by 1 s only in a later second with drops,
            so a level one side has flooded would slow the other down."""
            k("delete", "flowschema,prioritylevelconfiguration", "-l", "bench=throttle",
              "--ignore-not-found")  # fmt: skip
            items = json.loads(json.dumps(ONE_SEAT))
            pl = f"envisolation-bench-{tag}"
            items[0]["metadata"] = {"name": pl, "labels": {"bench": "throttle"}}
            items[1]["metadata"] = {"name": pl, "labels": {"bench": "throttle"}}
            items[1]["spec"]["priorityLevelConfiguration"]["name"] = pl
            k(
                "apply",
                "-f",
                "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
            )
            time.sleep(2)  # the API server's APF configuration follows within a second

        token = k(
            "create", "token", "envisolation", "-n", "envisolation-system", "--duration=4h"
        ).strip()
        cfg = json.loads(k("config", "view", "--raw", "-o", "json"))
        cfg["users"] = [{"name": "sa", "user": {"token": token}}]
        cfg["contexts"][0]["context"]["user"] = "sa"
        sa_kubeconfig = work / "sa.kubeconfig"
        sa_kubeconfig.write_text(json.dumps(cfg))
        server = cfg["clusters"][0]["cluster"]["server"]
        writer = Writer(server, token, work / "c" / "pki" / "ca.crt")

        health = f"http://127.0.0.1:{free_port()}/healthz"
        metrics = f"http://127.0.0.1:{free_port()}"
        op_env = {
            **os.environ,
            "KUBECONFIG": str(sa_kubeconfig),
            "PYTHONPATH": str(ROOT / "operator"),
        }
        log = open(work / "operator.log", "ab")  # noqa: SIM115
        op = subprocess.Popen(
            [sys.executable, "-m", "envisolation", "run", "--liveness", health,
             "--metrics-bind", metrics.removeprefix("http://"), "--namespace", "envisolation-system"],
            stdout=log, stderr=subprocess.STDOUT, env=op_env, start_new_session=True,
        )  # fmt: skip

        def alive() -> bool:
            try:
                with urllib.request.urlopen(health, timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        def metric(name: str) -> float:
            with urllib.request.urlopen(f"{metrics}/metrics", timeout=5) as r:
                text = r.read().decode()
            return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                       if ln.split("{")[0].split(" ")[0] == name)  # fmt: skip

        deadline = time.monotonic() + 60
        while not alive():
            if op.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the operator did not start")
            time.sleep(0.2)

        def namespaces(tag: str, label: str) -> list[dict[str, Any]]:
            return [{"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": f"{tag}-{i:04d}", "labels": {label: SEGMENTS[i % 3]}}}
                    for i in range(n)]  # fmt: skip

        def isolation(name: str, label: str) -> dict[str, Any]:
            return {"apiVersion": "envisolation.io/v1alpha1", "kind": "EnvironmentIsolation",
                    "metadata": {"name": name},
                    "spec": {"namespaceLabel": label, "segments": [{"name": s} for s in SEGMENTS],
                             "isolate": ["Ingress", "Egress"], "dns": {"enabled": True}}}  # fmt: skip

        def live(selector: str) -> dict[tuple[str, str], Any]:
            items = json.loads(k("get", "networkpolicies", "-A", "-l", selector, "-o", "json"))[
                "items"
            ]
            return {(p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"] for p in items}

        def wait_count(selector: str, want: int, t0: float, probes: list[bool]) -> float:
            while True:
                probes.append(alive())
                if len(live(selector)) >= want:
                    return time.monotonic() - t0
                if time.monotonic() - t0 > 900:
                    raise RuntimeError(f"not converged after 900 s ({selector})")
                time.sleep(0.25)

        out_rounds: list[dict[str, Any]] = []
        for r in range(rounds):
            label_b, label_o = f"bench.b{r}/segment", f"bench.o{r}/segment"
            ns_b, ns_o = namespaces(f"b{r}", label_b), namespaces(f"o{r}", label_o)
            k(
                "apply",
                "-f",
                "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": ns_b + ns_o}),
            )
            ctx = RenderContext()
            facts_b = [NamespaceFacts.from_body(b) for b in ns_b]
            want_b = render_all(
                [EnvironmentIsolation.from_body(isolation(f"b{r}", label_b))], facts_b, ctx
            )
            for p in want_b:  # the baseline's objects carry the bench's own marker
                p["metadata"]["labels"] = {"bench": f"b{r}"}
            facts_o = [NamespaceFacts.from_body(o) for o in ns_o]
            iso = isolation(f"o{r}", label_o)
            want_o = render_all([EnvironmentIsolation.from_body(iso)], facts_o, ctx)
            probes: list[bool] = []
            level(f"b{r}")
            writer.max_retry_after = 0.0
            throttled_before = writer.throttled
            t0 = time.monotonic()
            asyncio.run(writer.apply_all([dict(p) for p in want_b]))
            base_s = time.monotonic() - t0
            base_429 = writer.throttled - throttled_before
            assert len(live(f"bench=b{r}")) == len(want_b), "the baseline lost work"
            level(f"o{r}")
            op_429_before = metric("envisolation_api_throttled_total")
            t0 = time.monotonic()
            k("apply", "-f", "-", stdin=json.dumps(iso))
            op_s = wait_count(f"envisolation.io/isolation=o{r}", len(want_o), t0, probes)
            got = live(f"envisolation.io/isolation=o{r}")
            lost = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in want_o
                    if (p["metadata"]["namespace"], p["metadata"]["name"]) not in got]  # fmt: skip
            row = {"round": r + 1, "namespaces": n, "policies": len(want_o),
                   "throttled_baseline_s": round(base_s, 2), "baseline_429s": base_429,
                   "baseline_max_retry_after_s": writer.max_retry_after,
                   "throttled_s": round(op_s, 2),
                   "throttled_429s": metric("envisolation_api_throttled_total") - op_429_before,
                   "throttled_ratio": round(op_s / base_s, 3), "lost": len(lost) + len(got) - len(want_o),
                   "operator_alive": all(probes) and op.poll() is None}  # fmt: skip
            out_rounds.append(row)
            print(json.dumps(row), flush=True)

        def summary(key: str) -> dict[str, float]:
            vals = [float(x[key]) for x in out_rounds]
            return {"median": round(statistics.median(vals), 3), "min": min(vals), "max": max(vals)}

        result = {
            "n": n,
            "rounds": out_rounds,
            "throttled_s": summary("throttled_s"),
            "throttled_baseline_s": summary("throttled_baseline_s"),
            "throttled_ratio": summary("throttled_ratio"),
            "throttled_429s": summary("throttled_429s"),
            "lost": sum(x["lost"] for x in out_rounds),
            "operator_alive": all(x["operator_alive"] for x in out_rounds),
            "priority_level": "3 seats (nominalConcurrencyShares 1, lendablePercent 0), 1 queue of 1",
            "cpus": os.cpu_count(),
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"throttle-{n}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k_: v for k_, v in result.items() if k_ != "rounds"}, indent=2))
    finally:
        if op is not None and op.poll() is None:
            op.terminate()
            op.wait(timeout=20)
        subprocess.run([*hack, "down", "--dir", str(work / "c")], check=False, capture_output=True)


if __name__ == "__main__":
    main()
