"""The chaos tier: the operator under faults, on a real control plane of its own.

The cluster here differs from the API tier's in three ways, each needed by a scenario:
  --watch-cache=false            watches read etcd directly, so a compaction yields 410 Gone
  --etcd-compaction-interval=0   only the tests compact (scenario 3), never the server
  an audit log (writes only)     who wrote what: API writes are counted from it per user agent
The operator names itself `envisolation/<version>` (runtime/client.py) and Kopf `kopf/<version>`; both
count as the operator. Every scenario ends with the oracle (oracle.py) holding.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import (
    HACK,
    Cluster,
    Kubectl,
    Operator,
    eventually,
    start_cluster,
    stop_cluster,
    tail,
)

OPERATOR_AGENTS = ("envisolation/", "kopf/")
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "verbs": list(WRITE_VERBS)}, {"level": "None"}],
}
RESULTS = Path(os.environ.get("ENVISOLATION_CHAOS_RESULTS", tempfile.gettempdir()))
RESULTS_FILE = RESULTS / "envisolation-chaos.jsonl"


@dataclass
class Audit:
    """The API server's audit log (write requests only), read from a byte offset."""

    path: Path

    def mark(self) -> int:
        time.sleep(0.3)  # let requests already answered reach the log
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        time.sleep(0.3)
        with open(self.path, "rb") as f:
            f.seek(since)
            data = f.read()
        out = []
        for line in data.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line still being written
        return out

    def writes(
        self,
        since: int = 0,
        resource: str | None = "networkpolicies",
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = "",
        operator_only: bool = True,
        succeeded: bool = True,
    ) -> list[dict[str, Any]]:
        """Write requests, by default the operator's successful ones to NetworkPolicies.

        `succeeded=False` counts attempts too: refused ones, and those the API server
        logs as 504 because the client went away while they were in flight.
        """
        found = []
        for e in self.events(since):
            ref = e.get("objectRef") or {}
            if e.get("verb") not in WRITE_VERBS or e.get("stage") != "ResponseComplete":
                continue
            if operator_only and not str(e.get("userAgent", "")).startswith(OPERATOR_AGENTS):
                continue
            if succeeded and int((e.get("responseStatus") or {}).get("code") or 0) >= 300:
                continue
            if resource is not None and ref.get("resource") != resource:
                continue
            if subresource is not None and (ref.get("subresource") or "") != subresource:
                continue
            if namespace is not None and ref.get("namespace") != namespace:
                continue
            if name is not None and ref.get("name") != name:
                continue
            found.append(e)
        return found

    def count(self, since: int = 0, **kw: Any) -> int:
        return len(self.writes(since, **kw))


@dataclass
class Chaos:
    """Faults: the cluster's components and etcd itself."""

    cluster: Cluster
    kubectl: Kubectl
    audit: Audit

    def hack(self, *args: str) -> None:
        res = subprocess.run(
            [sys.executable, str(HACK / "cluster"), *args, "--dir", str(self.cluster.dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 0, f"hack/cluster {' '.join(args)}:\n{res.stderr}"

    def etcdctl(self, *args: str) -> str:
        port = self.cluster.state()["ports"]["etcd"]
        res = subprocess.run(
            [str(self.cluster.bin_dir / "etcdctl"), f"--endpoints=http://127.0.0.1:{port}", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 0, f"etcdctl {' '.join(args)}:\n{res.stderr}"
        return res.stdout

    def etcd_revision(self) -> int:
        status = json.loads(self.etcdctl("endpoint", "status", "-w", "json"))
        return int(status[0]["Status"]["header"]["revision"])

    def delete_behind_a_410(self, namespace: str, policy: str, bump_in: str) -> None:
        """While the operator cannot watch: restart the API server (watches cut), delete
        `policy`, and compact etcd past it, so a watch from before answers 410 Gone (proven
        with a probe watch)."""
        old_rv = self.kubectl.json("get", "networkpolicy", "-n", namespace, policy)[
            "metadata"]["resourceVersion"]  # fmt: skip
        self.hack("restart", "kube-apiserver")
        self.kubectl("delete", "networkpolicy", "-n", namespace, policy)
        self.kubectl("create", "configmap", "-n", bump_in, "bump-revision")
        self.etcdctl("compaction", str(self.etcd_revision()))
        probe = self.kubectl(
            "get", "--raw",
            f"/apis/networking.k8s.io/v1/networkpolicies?watch=1&resourceVersion={old_rv}"
            "&timeoutSeconds=2",
        )  # fmt: skip
        assert '"code":410' in probe.stdout.replace(" ", ""), probe.stdout

    def api_ready(self) -> bool:
        return self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0


EVER: dict[str, set[str]] = {}  # label key -> every namespace a scenario ever gave it


@dataclass
class Scenario:
    """One scenario's isolation: its own label key, CR and namespaces."""

    kubectl: Kubectl
    audit: Audit
    label: str
    iso: str
    namespaces: list[str] = field(default_factory=list)

    def cr(self, **spec: Any) -> dict[str, Any]:
        spec.setdefault("segments", [{"name": "dev"}, {"name": "test"}, {"name": "prod"}])
        return {
            "apiVersion": "envisolation.io/v1alpha1",
            "kind": "EnvironmentIsolation",
            "metadata": {"name": self.iso},
            "spec": {"namespaceLabel": self.label, **spec},
        }

    def apply_cr(self, **spec: Any) -> None:
        self.kubectl.apply(json.dumps(self.cr(**spec)))

    def make(self, count: int, segments: tuple[str, ...] = ("dev", "test", "prod"),
             stem: str = "ns", extra: dict[str, str] | None = None) -> list[str]:  # fmt: skip
        """`count` labelled namespaces, spread over `segments`, in one kubectl call."""
        names = [f"{self.iso}-{stem}-{len(self.namespaces) + i}" for i in range(count)]
        items = [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": n,
                    "labels": {self.label: segments[i % len(segments)], **(extra or {})},
                },
            }
            for i, n in enumerate(names)
        ]
        EVER.setdefault(self.label, set()).update(names)
        self.kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        self.namespaces += names
        return names

    def relabel(self, ns: str, segment: str) -> None:
        EVER.setdefault(self.label, set()).add(ns)
        self.kubectl("label", "namespace", ns, f"{self.label}={segment}", "--overwrite")


@pytest.fixture(scope="package")
def chaos_cluster() -> Iterator[tuple[Cluster, Audit]]:
    policy = Path(tempfile.mkdtemp(prefix="envisolation-audit-")) / "audit-policy.json"
    policy.write_text(json.dumps(AUDIT_POLICY))
    log = policy.parent / "audit.log"
    RESULTS_FILE.unlink(missing_ok=True)
    c = start_cluster(
        "envisolation-chaos-cluster-",
        (
            "--watch-cache=false",
            "--etcd-compaction-interval=0",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={log}",
            "--audit-log-mode=blocking",
        ),
    )
    try:
        yield c, Audit(log)
    finally:
        stop_cluster(c)


@pytest.fixture(scope="package")
def kubectl(chaos_cluster: tuple[Cluster, Audit]) -> Kubectl:
    k = Kubectl(chaos_cluster[0])
    k.install_crds()
    return k


@pytest.fixture
def cluster(chaos_cluster: tuple[Cluster, Audit]) -> Cluster:
    return chaos_cluster[0]


@pytest.fixture
def audit(chaos_cluster: tuple[Cluster, Audit]) -> Audit:
    return chaos_cluster[1]


@pytest.fixture
def chaos(cluster: Cluster, kubectl: Kubectl, audit: Audit) -> Iterator[Chaos]:
    ch = Chaos(cluster, kubectl, audit)
    yield ch
    # Whatever a scenario did, the next one starts with every component up.
    for name, pid in cluster.state()["pids"].items():
        try:
            os.killpg(int(pid), signal.SIGCONT)
        except ProcessLookupError:
            ch.hack("restart", name)
    eventually(ch.api_ready, timeout=120)


@pytest.fixture
def operators(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Callable[[], Operator]]:
    """Operator processes for this test (started by the test), stopped at its end."""
    started: list[Operator] = []
    stem = request.node.name[:40]

    def new() -> Operator:
        op = Operator(cluster, cluster.dir / "logs" / f"operator-{stem}-{len(started)}.log")
        started.append(op)
        return op

    yield new
    for op in started:
        op.stop()


@pytest.fixture
def operator(operators: Callable[[], Operator]) -> Operator:
    """One operator, already running."""
    op = operators()
    op.start()
    return op


@pytest.fixture
def scenario(kubectl: Kubectl, audit: Audit) -> Iterator[Scenario]:
    tag = secrets.token_hex(3)
    s = Scenario(kubectl, audit, f"chaos.test/{tag}", f"chaos-{tag}")
    yield s
    kubectl("delete", "enviso", s.iso, "--ignore-not-found", "--wait=false", check=False)
    for ns in s.namespaces:
        kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)


def record(scenario: str, **figures: Any) -> None:
    """Figures for the closing table (printed at the end of the run)."""
    with open(RESULTS_FILE, "a") as f:
        f.write(json.dumps({"scenario": scenario, **figures}) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    try:
        rows = [json.loads(x) for x in RESULTS_FILE.read_text().splitlines()]
    except FileNotFoundError:
        return
    terminalreporter.section("chaos scenarios")
    for r in rows:
        name = r.pop("scenario")
        terminalreporter.write_line(
            f"{name:34} " + "  ".join(f"{k}={v}" for k, v in sorted(r.items()))
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    op: Operator | None = funcargs.get("operator")
    if op is not None:
        report.sections.append(("operator log (tail)", tail(op.log, 80)))
    c: Cluster | None = funcargs.get("cluster")
    if c is not None:
        for name in c.dead_components():
            report.sections.append((f"{name} DIED; log tail", tail(c.log(name))))
