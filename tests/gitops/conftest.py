"""The gitops tier: a real Argo CD (hack/argocd) syncing from a git daemon on loopback.

A control plane of its own (hack/cluster), Argo CD's application-controller and
repo-server built from their Go module, Redis, and two repositories served by
`git-daemon`: `envisolation.git` (this checkout's install manifests, chart and examples)
and `platform.git` (a platform team's EnvironmentIsolation and namespaces). Tests change
the cluster the way users do: by committing to a repository and asking Argo CD to
refresh.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ROOT, Cluster, Kubectl, eventually, start_cluster, stop_cluster, tail

HACK = ROOT / "hack"
FIGURES: dict[str, Any] = {}


@dataclass
class Repo:
    """A bare repository served by Argo CD's git daemon, and a work tree to commit from."""

    name: str
    bare: Path
    work: Path
    url: str

    def git(self, *args: str) -> str:
        res = subprocess.run(
            ["git", "-C", str(self.work), *args], capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{res.stderr}")
        return res.stdout

    def write(self, path: str, text: str) -> None:
        p = self.work / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def remove(self, path: str) -> None:
        self.git("rm", "-r", "-q", path)

    def commit(self, message: str) -> str:
        """Commit everything in the work tree and push it; the new revision."""
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD").strip()


@dataclass
class Argo:
    dir: Path
    state: dict[str, Any]
    k: Kubectl

    def repo(self, name: str, files: dict[str, str] | None = None, tree: list[Path] = ()) -> Repo:  # type: ignore[assignment]
        bare = self.dir / "git" / f"{name}.git"
        work = self.dir / "work" / name
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        work.mkdir(parents=True)
        url = f"git://127.0.0.1:{self.state['ports']['git']}/{name}.git"
        repo = Repo(name, bare, work, url)
        repo.git("init", "-q", "-b", "main")
        repo.git("config", "user.email", "platform@example.com")
        repo.git("config", "user.name", "Platform Team")
        repo.git("remote", "add", "origin", str(bare))
        for src in tree:
            shutil.copytree(ROOT / src, work / src, ignore=shutil.ignore_patterns("__pycache__"))
        for path, text in (files or {}).items():
            repo.write(path, text)
        repo.commit("initial")
        return repo

    def app(self, name: str) -> dict[str, Any]:
        return dict(self.k.json("get", "application", name, "-n", "argocd"))

    def refresh(self, name: str) -> None:
        """What a webhook or the UI's Refresh does: compare with the repository now."""
        self.k("annotate", "application", name, "-n", "argocd", "--overwrite",
               "argocd.argoproj.io/refresh=normal")  # fmt: skip

    def status(self, name: str) -> tuple[str, str, str]:
        st = self.app(name).get("status", {})
        return (
            st.get("sync", {}).get("status", ""),
            st.get("health", {}).get("status", ""),
            st.get("sync", {}).get("revision", ""),
        )

    def wait(self, name: str, sync: str = "Synced", health: str = "Healthy",
             revision: str | None = None, timeout: float = 90) -> dict[str, Any]:  # fmt: skip
        def reached() -> dict[str, Any]:
            app = self.app(name)
            st = app.get("status", {})
            now = (st.get("sync", {}).get("status"), st.get("health", {}).get("status"))
            assert now == (sync, health), f"{name}: {now}, want {(sync, health)}: " + json.dumps(
                {"conditions": st.get("conditions"), "operationState": st.get("operationState", {}).get("message"),
                 "resources": [r for r in st.get("resources", []) if r.get("status") != "Synced"
                               or r.get("health", {}).get("status") not in (None, "Healthy")]}
            )[:3000]  # fmt: skip
            if revision is not None:
                assert st.get("sync", {}).get("revision") == revision, "not yet at the new commit"
            return app

        return dict(eventually(reached, timeout=timeout, interval=0.5))

    def alive(self) -> list[str]:
        res = subprocess.run(
            [sys.executable, str(HACK / "argocd"), "status", "--dir", str(self.dir)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return [line.split()[0] for line in res.stdout.splitlines() if "EXITED" in line]

    def log(self, process: str) -> Path:
        return self.dir / "logs" / f"{process}.log"


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    c = start_cluster("envisolation-gitops-cluster-")
    try:
        yield c
    finally:
        stop_cluster(c)


@pytest.fixture(scope="package")
def kubectl(cluster: Cluster) -> Kubectl:
    return Kubectl(cluster)


@pytest.fixture(scope="package")
def argo(cluster: Cluster, kubectl: Kubectl) -> Iterator[Argo]:
    d = cluster.dir / "argocd"
    t0 = time.monotonic()
    up = subprocess.run(
        [sys.executable, str(HACK / "argocd"), "up", "--dir", str(d),
         "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if up.returncode != 0:
        raise RuntimeError(f"hack/argocd up failed:\n{up.stderr}")
    FIGURES["argocd_up_s"] = round(time.monotonic() - t0, 1)
    try:
        yield Argo(d, json.loads(up.stdout), kubectl)
    finally:
        down = subprocess.run(
            [sys.executable, str(HACK / "argocd"), "down", "--dir", str(d)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert down.returncode == 0, down.stderr


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    a: Argo | None = getattr(item, "funcargs", {}).get("argo")
    if a is not None:
        for name in ("application-controller", "repo-server"):
            report.sections.append((f"argocd {name} log (tail)", tail(a.log(name), 30)))
        for name in a.alive():
            report.sections.append((f"argocd {name} EXITED", tail(a.log(name))))
    op = getattr(item, "funcargs", {}).get("operator")
    if op is not None:
        report.sections.append(("operator log (tail)", tail(op.log, 40)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.write_sep("-", "gitops tier figures")
        terminalreporter.write_line(json.dumps(FIGURES, sort_keys=True))
        out = ROOT / "build" / "gitops-figures.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")
