"""The API tier: one real control plane per session (hack/cluster), driven with kubectl.

Fixtures:
  cluster    the running cluster (kubeconfig, binaries, component logs)
  kubectl    a kubectl bound to it
  make_ns    creates uniquely named namespaces, deleted after the test
  operator   `envisolation run` as a real subprocess against the cluster (restartable)
When a test fails, the tail of the operator's log and of any dead component is attached.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HACK = ROOT / "hack"


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Cluster:
    dir: Path
    kubeconfig: Path
    bin_dir: Path

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.dir / "state.json").read_text()))

    def dead_components(self) -> list[str]:
        dead = []
        for name, pid in self.state()["pids"].items():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                dead.append(name)
        return dead

    def log(self, component: str) -> Path:
        return self.dir / "logs" / f"{component}.log"


class Kubectl:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.cluster.bin_dir / "kubectl"), *args]
        if user:
            argv += ["--as", user]
        res = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env, check=False
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{res.stderr}")
        return res

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json", "--show-managed-fields").stdout)

    def install_crds(self) -> None:
        """Apply crds/ and wait until the API serves it (conditions appear a moment later)."""
        self("apply", "--server-side", "-k", str(ROOT / "crds"))
        eventually(
            lambda: self("wait", "--for=condition=established", "--timeout=30s",
                         "crd/environmentisolations.envisolation.io", check=False).returncode
            == 0,
            timeout=60,
        )  # fmt: skip

    def apply(self, manifest: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self("apply", "-f", "-", *args, input=manifest)

    def token_kubeconfig(self, token: str, path: Path) -> Path:
        """A kubeconfig for this cluster that authenticates with `token` only."""
        cfg = json.loads(self("config", "view", "--raw", "-o", "json").stdout)
        cfg["users"] = [{"name": "token", "user": {"token": token}}]
        cfg["contexts"][0]["context"]["user"] = "token"
        path.write_text(json.dumps(cfg))
        return path

    def policies(self, namespace: str) -> dict[str, dict[str, Any]]:
        items = self.json("get", "networkpolicies", "-n", namespace)["items"]
        return {p["metadata"]["name"]: p for p in items}

    def metric_sum(self, name: str, **labels: str) -> float:
        """Sum of an API server metric's samples whose labels match."""
        text = self("get", "--raw", "/metrics").stdout
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{"):
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(re.fullmatch(v, found.get(k, "")) for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def policy_writes(self) -> float:
        """Creates and updates of NetworkPolicies, as the API server counts them."""
        return self.metric_sum(
            "apiserver_request_total", resource="networkpolicies", verb="POST|PUT|PATCH|APPLY"
        )


def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.25) -> Any:
    """Retry `check` until it returns a truthy value without raising; re-raise at the end."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
            err: BaseException | None = AssertionError(f"still {value!r} after {timeout}s")
        except AssertionError as e:
            err = e
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s") from err
        time.sleep(interval)


def start_cluster(
    prefix: str = "envisolation-test-cluster-", apiserver_args: tuple[str, ...] = ()
) -> Cluster:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    extra = [f"--apiserver-arg={a}" for a in apiserver_args]
    up = subprocess.run(
        [sys.executable, str(HACK / "cluster"), "up", "--dir", str(d), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if up.returncode != 0:
        raise RuntimeError(f"hack/cluster up failed:\n{up.stderr}")
    state = json.loads((d / "state.json").read_text())
    return Cluster(d, d / "kubeconfig", Path(state["bin_dir"]))


def stop_cluster(c: Cluster) -> None:
    subprocess.run(
        [sys.executable, str(HACK / "cluster"), "down", "--dir", str(c.dir)], check=False
    )
    shutil.rmtree(c.dir, ignore_errors=True)


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    c = start_cluster()
    try:
        yield c
    finally:
        stop_cluster(c)


@pytest.fixture(scope="package")
def kubectl(cluster: Cluster) -> Kubectl:
    k = Kubectl(cluster)
    k.install_crds()
    return k


@pytest.fixture
def make_ns(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    created: list[str] = []
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")

    def make(labels: dict[str, str] | None = None, name: str | None = None) -> str:
        ns = name or f"{stem}-{secrets.token_hex(3)}"
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": labels or {}},
        }
        kubectl.apply(json.dumps(body))
        created.append(ns)
        return ns

    yield make
    for ns in created:
        kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def free_port() -> int:
    """A free port below the ephemeral range (see free_port in hack/cluster for why)."""
    for _ in range(200):
        port = secrets.randbelow(12000) + 20000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-31999")


@dataclass
class Operator:
    cluster: Cluster
    log: Path
    kubeconfig: Path | None = None  # default: the cluster's admin kubeconfig
    proc: subprocess.Popen[bytes] | None = None
    health: str = ""
    metrics: str = ""
    starts: int = field(default=0)
    args: tuple[str, ...] = ()  # extra `envisolation run` flags (leader election)
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.health = f"http://127.0.0.1:{free_port()}/healthz"
        self.metrics = f"127.0.0.1:{free_port()}"
        kubeconfig = self.kubeconfig or self.cluster.kubeconfig
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = str(ROOT / "operator")
        env.update(self.env)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "envisolation", "run", "--liveness", self.health,
                 "--metrics-bind", self.metrics, "--namespace", "envisolation-system",
                 *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        eventually(self.healthy, timeout=60)

    def healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "operator exited:\n" + tail(
            self.log
        )
        try:
            with urllib.request.urlopen(self.health, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def ready(self) -> bool:
        """/readyz on the metrics port: the view is warm."""
        try:
            with urllib.request.urlopen(f"http://{self.metrics}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def restart(self) -> None:
        self.stop()
        self.start()

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.split("{")[0].split(" ")[0] == name  # this series, with any labels
        )


@pytest.fixture(scope="package")
def operator(cluster: Cluster, kubectl: Kubectl) -> Iterator[Operator]:
    op = Operator(cluster, cluster.dir / "logs" / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    c: Cluster | None = getattr(item, "funcargs", {}).get("cluster")
    op: Operator | None = getattr(item, "funcargs", {}).get("operator")
    k: Kubectl | None = getattr(item, "funcargs", {}).get("kubectl")
    if c is None and op is not None:
        c = op.cluster
    if c is None and k is not None:
        c = k.cluster
    if op is not None:
        report.sections.append(("operator log (tail)", tail(op.log, 60)))
    if c is not None:
        for name in c.dead_components():
            report.sections.append((f"{name} DIED; log tail", tail(c.log(name))))


@pytest.fixture
def label() -> str:
    """A label key of this test's own, so tests never claim each other's namespaces."""
    return f"env.test/{secrets.token_hex(4)}"


@pytest.fixture
def make_iso(kubectl: Kubectl, operator: Operator) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(label: str, name: str | None = None, **spec: Any) -> str:
        name = name or f"iso-{secrets.token_hex(4)}"
        spec.setdefault("segments", [{"name": "dev"}, {"name": "prod"}])
        body = {
            "apiVersion": "envisolation.io/v1alpha1",
            "kind": "EnvironmentIsolation",
            "metadata": {"name": name},
            "spec": {"namespaceLabel": label, **spec},
        }
        kubectl.apply(json.dumps(body))
        made.append(name)
        return name

    yield make
    for name in made:
        kubectl("delete", "enviso", name, "--ignore-not-found", "--wait=false", check=False)


ADMINS = "envisolation:segment-admins"  # the admission guard's default segment-admin group


def platform(k: Kubectl, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """kubectl as a platform engineer in the segment-admin group."""
    return k(
        *args,
        "--as",
        "platform@example.com",
        "--as-group",
        ADMINS,
        "--as-group",
        "system:masters",
        check=check,
    )
