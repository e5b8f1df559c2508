"""envisolation at scale against the API server's own limit (run: make bench [N=1000]).

For each N, on a fresh local cluster with the flags the tests use:
  1. N namespaces over dev/test/prod for the operator, and 3 x N of the same shape for the
     baselines (labelled so the operator ignores them).
  2. Baselines, same run: the objects `envisolation render` prints, written (a) by a bare
     asyncio client doing server-side apply at the operator's concurrency, (b) by
     `kubectl apply --server-side` of the rendered stream; (a) runs again into the third
     set while the operator is stopped for the restart test, so that the cluster's growth
     over the run favours neither side: `ratio` is convergence over the mean of the two
     bare-client runs (`ratio_to_first_baseline` over the first alone).
  3. The operator: time from applying the EnvironmentIsolation until a watch has seen every
     namespace hold its policies (convergence_s), and until status says Ready.
  4. Latency: relabel namespaces dev <-> prod at 10 changes/s for LATENCY_S seconds; per
     change, the time until the watch shows its policies match.
  5. Writes, from the API server's apiserver_request_total: per namespace at convergence,
     during IDLE_S idle, an operator restart, a forced relist (kube-apiserver restarted),
     and an Argo-CD-like re-apply of the unchanged CR every 10 s for 60 s. After the
     restart, restart_ready_s: from process start to its first complete pass (which finds
     nothing to write: restart_ready_writes), the window in which drift is not repaired.
  6. RSS and CPU seconds of the operator.
  7. Alternating rounds (BENCH_ROUNDS, default 3; round 1 is steps 2-3): the bare client
     into N fresh namespaces, then the operator with an isolation of its own over N other
     fresh ones, each timed until a watch has seen every policy; `rounds` keeps each,
     `ratio_median`, `ratio_min`, `ratio_max` summarise operator over bare client. The
     cluster grows by 2 x N namespaces per round, which the alternation shares out.
  8. What bounds each timed write phase (per round, `bare` and `operator`): the API
     server's own mean time per NetworkPolicy apply (server_apply_ms, from
     apiserver_request_duration_seconds), applies per second, and for the operator its
     mean requests in flight and waiting for a slot (in_flight_mean, queued_mean, from
     its own integrals); medians over the rounds as <side>_<figure>_median.
  9. The throttled rollout (throttle_bench.py, BENCH_THROTTLE_N namespaces, default 240,
     0 skips it; its own cluster, once per run): its medians as throttled_s,
     throttled_baseline_s, throttled_ratio, throttled_429s in every scale-N.json.
Results: bench/results/scale-<N>.json; bench/README.md's table comes from them
(`python bench/scale_bench.py --table`), and bench/results/convergence.png.
Environment: BENCH_STANDBY=1 (two replicas with leader election; standby-N.json, with the
standby's RSS and CPU), BENCH_KUBECTL=0 (no kubectl baseline, whose N namespaces and
policies are then not in the cluster: 3 x N namespaces instead of 4 x N), BENCH_IDLE_S (default 300), BENCH_LATENCY_S (default 60), BENCH_PROFILE (a
path: py-spy samples the operator for 45 s from its start, collapsed stacks written there;
`pip install py-spy` first).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import re
import signal
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
import yaml

from crd import free_port, wait_established

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from envisolation import __version__  # noqa: E402
from envisolation.cli import render_all  # noqa: E402
from envisolation.policy.render import RenderContext  # noqa: E402
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts  # noqa: E402

SEGMENTS = ("dev", "test", "prod")
CONCURRENCY = 16  # the operator's: Controller(concurrency=16) over a 16-thread client pool
STANDBY = os.environ.get("BENCH_STANDBY") == "1"  # a second replica stands by (leader election)
RESULTS = Path(os.environ.get("BENCH_RESULTS") or ROOT / "bench" / "results")  # compare.py sets it
WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))  # alternating bare/operator rounds (ratio_*)
KUBECTL = os.environ.get("BENCH_KUBECTL", "1") != "0"  # the kubectl baseline (N namespaces)
# The throttled rollout (throttle_bench.py) at this N, once per run; 0: not run.
THROTTLE_N = int(os.environ.get("BENCH_THROTTLE_N", "240"))


def cr() -> dict[str, Any]:
    body = yaml.safe_load((ROOT / "examples" / "three-segments.yaml").read_text())
    for s in body["spec"]["segments"]:  # every segment enforced, every namespace managed
        s.pop("enforcement", None)
        s.pop("namespaceSelector", None)
    return dict(body)


class Api:
    """A bare asyncio client: the baseline's writer, the watch and the metrics reader."""

    def __init__(self, kubeconfig: Path, tmp: Path) -> None:
        cfg = json.loads(kubeconfig.read_text())
        self.server = cfg["clusters"][0]["cluster"]["server"]
        user = cfg["users"][0]["user"]
        for key, name in (("client-certificate-data", "crt"), ("client-key-data", "key")):
            (tmp / f"client.{name}").write_bytes(base64.b64decode(user[key]))
        (tmp / "ca.crt").write_bytes(
            base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
        )
        self.ssl = ssl.create_default_context(cafile=str(tmp / "ca.crt"))
        self.ssl.load_cert_chain(str(tmp / "client.crt"), str(tmp / "client.key"))
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        conn = aiohttp.TCPConnector(ssl=self.ssl, limit=CONCURRENCY * 2)
        self.session = aiohttp.ClientSession(
            connector=conn, timeout=aiohttp.ClientTimeout(total=None)
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def apply(self, obj: dict[str, Any]) -> None:
        assert self.session is not None
        meta = obj["metadata"]
        url = f"{self.server}/apis/networking.k8s.io/v1/namespaces/{meta['namespace']}/networkpolicies/{meta['name']}"
        async with self.session.patch(
            url, params={"fieldManager": "bench-baseline", "force": "true"}, data=json.dumps(obj),
            headers={"Content-Type": "application/apply-patch+yaml"},
        ) as r:  # fmt: skip
            r.raise_for_status()
            await r.read()

    async def apply_all(self, objs: list[dict[str, Any]]) -> None:
        """Server-side apply every object, CONCURRENCY at a time (the baselines' writer)."""
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(obj: dict[str, Any]) -> None:
            async with sem:
                await self.apply(obj)

        await asyncio.gather(*(one(o) for o in objs))

    async def create_all(self, namespaces: list[dict[str, Any]]) -> None:
        """Create the namespaces, 32 at a time (kubectl apply took minutes at N=5,000)."""
        assert self.session is not None
        session, sem = self.session, asyncio.Semaphore(2 * CONCURRENCY)

        async def one(obj: dict[str, Any]) -> None:
            async with sem, session.post(f"{self.server}/api/v1/namespaces", data=json.dumps(obj),
                                         headers={"Content-Type": "application/json"}) as r:  # fmt: skip
                if r.status != 409:  # 409: it exists already
                    r.raise_for_status()
                await r.read()

        await asyncio.gather(*(one(d) for d in namespaces))

    async def label(self, ns: str, key: str, value: str) -> None:
        assert self.session is not None
        async with self.session.patch(
            f"{self.server}/api/v1/namespaces/{ns}", data=json.dumps({"metadata": {"labels": {key: value}}}),
            headers={"Content-Type": "application/merge-patch+json"},
        ) as r:  # fmt: skip
            r.raise_for_status()
            await r.read()

    async def writes(self) -> dict[str, float]:
        """apiserver_request_total writes for networkpolicies and the CR (status apart)."""
        assert self.session is not None
        async with self.session.get(f"{self.server}/metrics") as r:
            text = await r.text()
        out = {"policies": 0.0, "status": 0.0, "cr": 0.0}
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if labels.get("verb") not in WRITE_VERBS:
                continue
            value = float(line.rsplit(" ", 1)[1])
            if labels.get("resource") == "networkpolicies":
                out["policies"] += value
            elif labels.get("resource") == "environmentisolations":
                out["status" if labels.get("subresource") == "status" else "cr"] += value
        return out

    async def apply_latency(self) -> tuple[float, float]:
        """apiserver_request_duration_seconds (sum, count) of server-side applies of
        NetworkPolicies: the API server's own time per write, without the client's."""
        assert self.session is not None
        async with self.session.get(f"{self.server}/metrics") as r:
            text = await r.text()
        total, count = 0.0, 0.0
        for line in text.splitlines():
            if not line.startswith(("apiserver_request_duration_seconds_sum{",
                                    "apiserver_request_duration_seconds_count{")):  # fmt: skip
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if labels.get("verb") == "APPLY" and labels.get("resource") == "networkpolicies":
                value = float(line.rsplit(" ", 1)[1])
                if line.startswith("apiserver_request_duration_seconds_sum{"):
                    total += value
                else:
                    count += value
        return total, count

    async def watch(self, on_event: Any, stop: asyncio.Event) -> None:
        """Watch managed NetworkPolicies cluster-wide until `stop` (re-watching on timeouts)."""
        assert self.session is not None
        rv = ""
        while not stop.is_set():
            params = {"watch": "1", "labelSelector": "app.kubernetes.io/managed-by=envisolation",
                      "allowWatchBookmarks": "true", "timeoutSeconds": "60"}  # fmt: skip
            if rv:
                params["resourceVersion"] = rv
            try:
                async with self.session.get(
                    f"{self.server}/apis/networking.k8s.io/v1/networkpolicies", params=params
                ) as r:
                    async for raw in r.content:
                        ev = json.loads(raw)
                        rv = ev["object"]["metadata"].get("resourceVersion", rv)
                        if ev["type"] != "BOOKMARK":
                            on_event(ev["type"], ev["object"], time.monotonic())
                        if stop.is_set():
                            return
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.5)


async def extra_round(api: Api, k: Any, n: int, r: int, port: int | None) -> dict[str, Any]:
    """Round r: the bare client writes the rendered policies of N fresh namespaces, then
    the operator rolls out an isolation of its own over N other fresh ones (same shape,
    label key env-r<r>); each timed until every policy exists (seen by a watch)."""
    label = f"env-r{r}"
    body = cr()
    body["metadata"]["name"] = f"environments-r{r}"
    body["spec"]["namespaceLabel"] = label
    iso = EnvironmentIsolation.from_body(body)
    docs, facts_b, facts_o = [], [], []
    for i in range(n):
        seg = SEGMENTS[i % 3]
        for prefix, labels, facts in ((f"r{r}b", {"bench-baseline": seg}, facts_b),
                                      (f"r{r}o", {label: seg}, facts_o)):  # fmt: skip
            name = f"{prefix}-{i:05}"
            docs.append({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": name, "labels": labels}})  # fmt: skip
            facts.append(
                NamespaceFacts.from_body({"metadata": {"name": name, "labels": {label: seg}}})
            )
    await api.create_all(docs)
    ctx = RenderContext()
    bare = render_all([iso], facts_b, ctx)
    for p in bare:
        p["metadata"]["labels"] = {
            **p["metadata"]["labels"],
            "app.kubernetes.io/managed-by": f"bench-r{r}",
        }
    mine = render_all([iso], facts_o, ctx)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(obj: Any) -> None:
        async with sem:
            await api.apply(obj)

    await asyncio.sleep(5)  # the namespaces' watch events are behind everyone
    async with Bound(api, None) as bare_bound:
        await asyncio.gather(*(one(dict(p)) for p in bare))
    want = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in mine}
    seen: set[tuple[str, str]] = set()
    done = asyncio.Event()

    def on_event(kind: str, obj: dict[str, Any], at: float) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if kind != "DELETED" and key in want:
            seen.add(key)
            if len(seen) == len(want):
                done.set()

    stop = asyncio.Event()
    watcher = asyncio.create_task(api.watch(on_event, stop))
    await asyncio.sleep(1)
    async with Bound(api, port) as op_bound:
        k("apply", "-f", "-", stdin=json.dumps(body))
        await asyncio.wait_for(done.wait(), timeout=3600)
    stop.set()
    watcher.cancel()
    return {"round": r, "bare_s": round(bare_bound.seconds, 2),
            "operator_s": round(op_bound.seconds, 2), "bare": bare_bound.figures(),
            "operator": op_bound.figures()}  # fmt: skip


OP_METRICS = {
    "passes": "envisolation_reconcile_duration_seconds_count",
    "in_flight_s": "envisolation_api_in_flight_seconds_total",
    "queued_s": "envisolation_api_queued_seconds_total",
}


def op_metrics(port: int) -> dict[str, float]:
    """The operator's own counters (OP_METRICS) from its /metrics; 0 until it serves.
    passes: completed reconcile passes; in_flight_s and queued_s: its API requests in
    flight and waiting for a slot, integrated over time."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return dict.fromkeys(OP_METRICS, 0.0)
    out = {}
    for key, name in OP_METRICS.items():
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        out[key] = float(m.group(1)) if m else 0.0
    return out


def passes(port: int) -> float:
    return op_metrics(port)["passes"]


class Bound:
    """What bounded a timed write phase: the API server's own mean time per apply of a
    NetworkPolicy (apiserver_request_duration_seconds), and, for the operator, its mean
    requests in flight and waiting for a slot (its own integrals over the phase)."""

    def __init__(self, api: Api, port: int | None) -> None:
        self.api, self.port = api, port

    async def __aenter__(self) -> Bound:
        self.t0 = time.monotonic()
        self.server0 = await self.api.apply_latency()
        self.op0 = await asyncio.to_thread(op_metrics, self.port) if self.port else {}
        return self

    async def __aexit__(self, *_: object) -> None:
        self.seconds = time.monotonic() - self.t0
        self.server1 = await self.api.apply_latency()
        self.op1 = await asyncio.to_thread(op_metrics, self.port) if self.port else {}

    def figures(self) -> dict[str, float]:
        (s0, c0), (s1, c1) = self.server0, self.server1
        out = {"server_apply_ms": round(1000 * (s1 - s0) / max(1.0, c1 - c0), 2),
               "applies_per_s": round((c1 - c0) / self.seconds, 1)}  # fmt: skip
        if self.op1:
            for key, name in (("in_flight_s", "in_flight_mean"), ("queued_s", "queued_mean")):
                out[name] = round((self.op1[key] - self.op0[key]) / self.seconds, 2)
        return out


def proc_stats(pid: int) -> tuple[float, float]:
    rss = next(
        int(x.split()[1])
        for x in Path(f"/proc/{pid}/status").read_text().splitlines()
        if x.startswith("VmRSS:")
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss / 1024, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def run(n: int, idle_s: float, latency_s: float) -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="envisolation-scale-"))
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
    standby: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"n": n}
    try:
        k("apply", "--server-side", "-k", str(ROOT / "crds"))
        wait_established(k)
        body = cr()
        iso = EnvironmentIsolation.from_body(body)
        groups = {"op": "env", "a": "base-a", "b": "base-b", "c": "base-c"}
        if not KUBECTL:  # no kubectl baseline: the cluster holds 3 x N namespaces, not 4 x N
            del groups["b"]
        facts: dict[str, list[NamespaceFacts]] = {}
        docs = []
        for g, prefix in groups.items():
            facts[g] = []
            for i in range(n):
                name, seg = f"{prefix}-{i:05}", SEGMENTS[i % 3]
                labels = {"environment": seg} if g == "op" else {"bench-baseline": seg}
                docs.append(
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"name": name, "labels": labels},
                    }
                )
                facts[g].append(
                    NamespaceFacts.from_body(
                        {"metadata": {"name": name, "labels": {"environment": seg}}}
                    )
                )
        async with Api(kubeconfig, work) as api:
            await api.create_all(docs)
        ctx = RenderContext()
        desired = {g: render_all([iso], facts[g], ctx) for g in groups}
        for g in groups.keys() - {"op"}:  # same objects, but not labelled as the operator's own
            for p in desired[g]:
                p["metadata"]["labels"] = {
                    **p["metadata"]["labels"],
                    "app.kubernetes.io/managed-by": f"bench-{g}",
                }
        result["policies"] = len(desired["op"])

        async with Api(kubeconfig, work) as api:
            sem = asyncio.Semaphore(CONCURRENCY)

            async def one(obj: Any) -> None:
                async with sem:
                    await api.apply(obj)

            async with Bound(api, None) as bare_bound:
                await asyncio.gather(*(one(dict(p)) for p in desired["a"]))
            result["baseline_ssa_s"] = round(bare_bound.seconds, 2)
            if "b" in groups:
                stream = work / "b.yaml"
                stream.write_text(yaml.safe_dump_all([dict(p) for p in desired["b"]]))
                t0 = time.monotonic()
                k("apply", "--server-side", "--field-manager=bench-kubectl", "-f", str(stream))
                result["baseline_kubectl_s"] = round(time.monotonic() - t0, 2)

            op_env = {**env, "PYTHONPATH": str(ROOT / "operator")}
            port = free_port()  # its metrics: passes, in-flight and queued integrals
            argv = [
                sys.executable,
                "-m",
                "envisolation",
                "run",
                "--liveness",
                "",
                "--metrics-bind",
                f"127.0.0.1:{port}",
            ]
            if STANDBY:  # two replicas with leader election: the first leads
                argv += ["--leader-elect", "--lease-namespace", "default"]
            op = subprocess.Popen(
                argv, env={**op_env, "POD_NAME": "bench-a"}, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if STANDBY:
                await asyncio.sleep(3)
                second = list(argv)
                second[second.index("--metrics-bind") + 1] = f"127.0.0.1:{free_port()}"
                standby = subprocess.Popen(
                    second, env={**op_env, "POD_NAME": "bench-b"}, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
            profile = os.environ.get("BENCH_PROFILE")  # py-spy samples of the rollout
            if profile:
                subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(op.pid),
                     "-d", "45", "-r", "50", "--format", "raw", "-o", profile, "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            await asyncio.sleep(5)

            # -- convergence, observed through a watch ---------------------------------
            want: dict[str, dict[str, str]] = {}
            for p in desired["op"]:
                want.setdefault(p["metadata"]["namespace"], {})[p["metadata"]["name"]] = p[
                    "metadata"
                ]["labels"]["envisolation.io/segment"]
            live: dict[str, dict[str, str]] = {}
            done_at: dict[str, float] = {}
            expect: dict[str, dict[str, str]] = {ns: dict(v) for ns, v in want.items()}

            def on_event(kind: str, obj: dict[str, Any], at: float) -> None:
                ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
                cur = live.setdefault(ns, {})
                if kind == "DELETED":
                    cur.pop(name, None)
                else:
                    cur[name] = obj["metadata"]["labels"].get("envisolation.io/segment", "")
                if ns in expect and cur == expect[ns]:
                    done_at[ns] = at

            stop = asyncio.Event()
            watcher = asyncio.create_task(api.watch(on_event, stop))
            await asyncio.sleep(1)
            before = await api.writes()
            cpu0 = proc_stats(op.pid)[1]
            t0 = time.monotonic()
            async with Bound(api, None if STANDBY else port) as op_bound:
                k("apply", "-f", "-", stdin=json.dumps(body))
                while len(done_at) < len(want):
                    await asyncio.sleep(0.05)
                    if time.monotonic() - t0 > 3600:
                        raise TimeoutError("no convergence within an hour")
            result["convergence_s"] = round(max(done_at.values()) - t0, 2)
            # the operator's CPU while it wrote: CPU it takes from the API server it waits on
            result["convergence_cpu_s"] = round(proc_stats(op.pid)[1] - cpu0, 2)
            while True:
                st = json.loads(k("get", "enviso", "environments", "-o", "json")).get("status", {})
                if st.get("namespaces") == n and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", [])
                ):
                    break
                await asyncio.sleep(0.2)
            result["ready_s"] = round(time.monotonic() - t0, 2)
            await asyncio.sleep(3)
            after = await api.writes()
            result["writes_per_namespace"] = round((after["policies"] - before["policies"]) / n, 3)
            result["policies_per_namespace"] = round(len(desired["op"]) / n, 3)
            result["status_writes_convergence"] = after["status"] - before["status"]

            # -- latency: relabel dev <-> prod at 10 changes per second ------------------
            dev = [f.name for f in facts["op"] if f.label_map["environment"] == "dev"]
            prod_want = want[
                next(f.name for f in facts["op"] if f.label_map["environment"] == "prod")
            ]
            dev_want = want[dev[0]]
            segment_now = dict.fromkeys(dev, "dev")
            latencies: list[float] = []
            pending: dict[str, float] = {}
            changes = int(latency_s * 10)
            for i in range(changes):
                ns = dev[i % len(dev)]
                if ns in pending:  # the previous change of this namespace is not done yet
                    await asyncio.sleep(0.1)
                    continue
                target = "prod" if segment_now[ns] == "dev" else "dev"
                expect[ns] = dict.fromkeys(prod_want if target == "prod" else dev_want, target)
                done_at.pop(ns, None)
                started = time.monotonic()
                pending[ns] = started
                await api.label(ns, "environment", target)
                segment_now[ns] = target
                for other, s in list(pending.items()):
                    if other in done_at:
                        latencies.append(done_at[other] - s)
                        del pending[other]
                await asyncio.sleep(max(0.0, started + 0.1 - time.monotonic()))
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                for other, s in list(pending.items()):
                    if other in done_at:
                        latencies.append(done_at[other] - s)
                        del pending[other]
                await asyncio.sleep(0.05)
            result["latency_changes"] = len(latencies)
            result["latency_lost"] = len(pending)
            result["latency_p50_s"] = round(pct(latencies, 50), 3)
            result["latency_p95_s"] = round(pct(latencies, 95), 3)
            result["latency_p99_s"] = round(pct(latencies, 99), 3)
            result["latency_max_s"] = round(max(latencies), 3) if latencies else None
            result["latency_mean_s"] = round(statistics.fmean(latencies), 3) if latencies else None
            await asyncio.sleep(5)

            # -- writes at steady state ---------------------------------------------------
            w0 = await api.writes()
            await asyncio.sleep(idle_s)
            w1 = await api.writes()
            result["idle_s"] = idle_s
            result["idle_writes"] = w1["policies"] - w0["policies"]
            status_writes = w1["status"] - w0["status"]

            rss, cpu = proc_stats(op.pid)  # converged, after the idle period
            result["rss_mib"] = round(rss, 1)
            result["cpu_s"] = round(cpu, 1)
            if standby is not None:
                srss, scpu = proc_stats(standby.pid)
                result["standby_rss_mib"] = round(srss, 1)
                result["standby_cpu_s"] = round(scpu, 1)
            # With a standby, stopping the leader hands over (it releases the Lease): the
            # restart figure is then the take-over's, and the restarted one stands by.
            op.send_signal(signal.SIGTERM)
            op.wait(timeout=30)
            # The bare client once more, now that the cluster holds what the operator wrote
            # (the first run had the emptier cluster): the ratio uses the mean of both.
            t0 = time.monotonic()
            await asyncio.gather(*(one(dict(p)) for p in desired["c"]))
            result["baseline_ssa_after_s"] = round(time.monotonic() - t0, 2)
            w1 = await api.writes()  # the counters past the baseline's own writes
            # Restart: from process start to the end of its first pass (a full one: the
            # schedule starts with every namespace due), read off its own metrics.
            port = free_port()
            again = list(argv)
            again[again.index("--metrics-bind") + 1] = f"127.0.0.1:{port}"
            started = time.monotonic()
            op = subprocess.Popen(
                again, env={**op_env, "POD_NAME": "bench-a"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            while not STANDBY and await asyncio.to_thread(passes, port) < 1:
                if op.poll() is not None or time.monotonic() - started > 600:
                    raise RuntimeError("the restarted operator never completed a pass")
                await asyncio.sleep(0.1)
            if not STANDBY:
                result["restart_ready_s"] = round(time.monotonic() - started, 2)
                result["restart_ready_writes"] = (await api.writes())["policies"] - w1["policies"]
            await asyncio.sleep(max(0.0, 30 - (time.monotonic() - started)))
            w2 = await api.writes()
            result["restart_writes"] = w2["policies"] - w1["policies"]
            status_writes += w2["status"] - w1["status"]

            stop.set()
            watcher.cancel()
        # A forced relist: the API server goes away and comes back; every watch relists.
        subprocess.run(
            [*hack, "restart", "kube-apiserver", "--dir", str(work / "c")],
            check=True,
            capture_output=True,
        )
        await asyncio.sleep(30)
        async with Api(kubeconfig, work) as api:
            w3 = await api.writes()  # counters restarted with the API server
            result["relist_writes"] = w3["policies"]
            status_writes += w3["status"]
            for _ in range(6):  # Argo-CD-like: re-apply the unchanged CR every 10 s
                k("apply", "-f", "-", stdin=json.dumps(body))
                await asyncio.sleep(10)
            w4 = await api.writes()
            result["reapply_writes"] = w4["policies"] - w3["policies"]
            status_writes += w4["status"] - w3["status"]
            # -- alternating rounds: bare client, operator, each into fresh namespaces ----
            rounds = [{"round": 1, "bare_s": result["baseline_ssa_s"],
                       "operator_s": result["convergence_s"], "bare": bare_bound.figures(),
                       "operator": op_bound.figures()}]  # fmt: skip
            for r in range(2, ROUNDS + 1):
                rounds.append(await extra_round(api, k, n, r, None if STANDBY else port))
                print(json.dumps(rounds[-1]), flush=True)
        result["status_writes"] = status_writes
        bare = (result["baseline_ssa_s"] + result["baseline_ssa_after_s"]) / 2
        result["ratio"] = round(result["convergence_s"] / bare, 2)
        result["ratio_to_first_baseline"] = round(
            result["convergence_s"] / result["baseline_ssa_s"], 2
        )
        for row in rounds:
            row["ratio"] = round(row["operator_s"] / row["bare_s"], 3)
        ratios = [row["ratio"] for row in rounds]
        result["rounds"] = rounds
        # What bounded the rollouts, as medians over the rounds (see Bound).
        for side in ("bare", "operator"):
            for key in ("server_apply_ms", "applies_per_s", "in_flight_mean", "queued_mean"):
                values = [row[side][key] for row in rounds if key in row.get(side, {})]
                if values:
                    result[f"{side}_{key}_median"] = round(statistics.median(values), 2)
        result["ratio_median"] = round(statistics.median(ratios), 3)
        result["ratio_min"] = min(ratios)
        result["ratio_max"] = max(ratios)
        result.update(
            {
                "envisolation": __version__,
                "kubernetes": "v1.37.2",
                "python": platform.python_version(),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "date": time.strftime("%Y-%m-%d"),
                "commit": commit,
            }
        )  # fmt: skip
        return result
    finally:
        for proc in (op, standby):
            if proc is not None and proc.poll() is None:
                proc.kill()
        subprocess.run([*hack, "down", "--dir", str(work / "c")], check=False, capture_output=True)


COLUMNS = [
    ("n", "N"), ("policies", "policies"), ("baseline_ssa_s", "bare SSA s"), ("baseline_ssa_after_s", "bare SSA after s"), ("baseline_kubectl_s", "kubectl s"),
    ("convergence_s", "operator s"), ("ratio", "ratio"), ("ratio_median", "ratio median"),
    ("ratio_min", "min"), ("ratio_max", "max"), ("ready_s", "Ready s"), ("latency_p50_s", "p50 s"),
    ("latency_p99_s", "p99 s"), ("writes_per_namespace", "writes/ns"), ("idle_writes", "idle"),
    ("restart_writes", "restart"), ("restart_ready_s", "restart pass s"), ("relist_writes", "relist"), ("reapply_writes", "re-apply"),
    ("status_writes", "status"), ("operator_in_flight_mean_median", "in flight"),
    ("operator_queued_mean_median", "queued"), ("bare_server_apply_ms_median", "server ms/apply bare"),
    ("operator_server_apply_ms_median", "server ms/apply op"), ("throttled_ratio", "throttled ratio"),
    ("rss_mib", "RSS MiB"), ("convergence_cpu_s", "CPU s rollout"),
    ("cpu_s", "CPU s"), ("commit", "commit"),
]  # fmt: skip


def table() -> str:
    rows = sorted(
        (json.loads(p.read_text()) for p in RESULTS.glob("scale-*.json")), key=lambda r: r["n"]
    )
    out = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(str(r.get(key, "")) for key, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(out)


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(
        (json.loads(p.read_text()) for p in RESULTS.glob("scale-*.json")), key=lambda r: r["n"]
    )
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("convergence_s", "envisolation"), ("baseline_ssa_s", "bare asyncio SSA"),
                       ("baseline_kubectl_s", "kubectl apply --server-side")):  # fmt: skip
        points = [(r["n"], r[key]) for r in rows if r.get(key) is not None]
        if points:  # kubectl's baseline is absent from runs with BENCH_KUBECTL=0
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    # Every alternating round, where a result has them: the spread behind the medians.
    for key, label, color in (("operator_s", "envisolation, each round", "C0"),
                              ("bare_s", "bare SSA, each round", "C1")):  # fmt: skip
        xs = [r["n"] for r in rows for _ in r.get("rounds", [])]
        ys = [x[key] for r in rows for x in r.get("rounds", [])]
        if xs:
            ax.scatter(xs, ys, s=12, alpha=0.5, color=color, label=label)
    ax.set_xlabel("namespaces")
    ax.set_ylabel("seconds to write every policy")
    ax.set_title("Convergence against the API server's own limit")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "convergence.png", dpi=100)


def throttled(written: list[Path]) -> None:
    """The rollout under APF throttling (throttle_bench.py, THROTTLE_N namespaces, its own
    cluster, three alternating rounds), once per `make bench`: its medians go into every
    scale-N.json this run wrote, the min-max and the source file beside them."""
    print(f"== throttled rollout, N={THROTTLE_N} (throttle_bench.py)", flush=True)
    subprocess.run([sys.executable, "throttle_bench.py", str(THROTTLE_N)],
                   cwd=ROOT / "bench", env={**os.environ, "ROUNDS": "3"}, check=True)  # fmt: skip
    summary = json.loads((RESULTS / f"throttle-{THROTTLE_N}.json").read_text())
    keys = ("throttled_s", "throttled_baseline_s", "throttled_ratio", "throttled_429s")
    for path in written:
        r = json.loads(path.read_text())
        r.update({key: summary[key]["median"] for key in keys})
        r["throttled"] = {"n": summary["n"], "file": f"throttle-{THROTTLE_N}.json",
                          "lost": summary["lost"], "operator_alive": summary["operator_alive"],
                          **{key: summary[key] for key in keys}}  # fmt: skip
        path.write_text(json.dumps(r, indent=2) + "\n")


def main() -> None:
    if "--table" in sys.argv:
        print(table())
        return
    if "--throttle" in sys.argv:  # only the throttled rollout, into every scale-N.json
        throttled(sorted(RESULTS.glob("scale-*.json")))
        print(table())
        return
    sizes = [int(a) for a in sys.argv[1:] if a.isdigit()] or [100, 1000, 5000]
    idle_s = float(os.environ.get("BENCH_IDLE_S", "300"))
    latency_s = float(os.environ.get("BENCH_LATENCY_S", "60"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    written = []
    for n in sizes:
        print(f"== N={n} (idle {idle_s:.0f} s, latency {latency_s:.0f} s)", flush=True)
        r = asyncio.run(run(n, idle_s, latency_s))
        name = f"standby-{n}.json" if STANDBY else f"scale-{n}.json"
        (RESULTS / name).write_text(json.dumps(r, indent=2) + "\n")
        written.append(RESULTS / name)
        print(json.dumps(r, indent=2), flush=True)
    if THROTTLE_N:
        throttled(written)
    plot()
    print(table())


if __name__ == "__main__":
    main()
