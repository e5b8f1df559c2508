"""The dataplane tier: real packets between pods, filtered by kube-router's firewall.

Needs root (network namespaces, iptables), the Debian packages `iptables`, `ipset` and
`iproute2` (hack/ensure-system-deps installs them) and kube-router built by
hack/build-kube-router (make test builds it). See lab.py for the topology and README.md
here for what each test proves and the figures of the last run.

The tier's control plane is its own (hack/cluster). Its kube-controller-manager runs
only the controllers listed in hack/cluster's CONTROLLERS: the node-lifecycle,
taint-eviction and pod-garbage-collector controllers are not among them, so the lab's
node (which has no kubelet and never reports Ready) is never tainted and its pods are
never evicted or collected.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import (
    HACK,
    ROOT,
    Cluster,
    Kubectl,
    Operator,
    start_cluster,
    stop_cluster,
    tail,
)
from tests.dataplane import netns
from tests.dataplane.lab import Lab

RESULTS = Path(os.environ.get("ENVISOLATION_DATAPLANE_RESULTS", tempfile.gettempdir()))
RESULTS_FILE = RESULTS / "envisolation-dataplane.jsonl"


def record(test: str, **figures: Any) -> None:
    """One line of figures per test (tests/dataplane/README.md quotes the last run)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS_FILE, "a") as out:
        out.write(json.dumps({"test": test, "at": time.time(), **figures}) + "\n")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the dataplane tier needs root (network namespaces, iptables)"
    lacking = [b for b in ("ip", "iptables", "iptables-save", "ipset") if not shutil.which(b)]
    if lacking:
        return f"missing {', '.join(lacking)}: run hack/ensure-system-deps as root"
    return None


@pytest.fixture(scope="package")
def host_before() -> dict[str, str]:
    """The host's network before the tier touched anything (test_teardown compares)."""
    why = _missing()
    if why:
        pytest.fail(why, pytrace=False)
    return netns.host_snapshot()


@pytest.fixture(scope="package")
def kube_router() -> Path:
    out = subprocess.run([str(HACK / "build-kube-router")], capture_output=True, text=True,
                         check=False)  # fmt: skip
    if out.returncode != 0:
        pytest.fail(f"hack/build-kube-router failed:\n{out.stderr}", pytrace=False)
    return Path(out.stdout.strip())


@pytest.fixture(scope="package")
def cluster(host_before: dict[str, str]) -> Iterator[Cluster]:
    c = start_cluster(prefix="envisolation-dataplane-")
    try:
        yield c
    finally:
        stop_cluster(c)


@pytest.fixture(scope="package")
def kubectl(cluster: Cluster) -> Kubectl:
    k = Kubectl(cluster)
    k.install_crds()
    return k


@pytest.fixture(scope="module")
def lab(cluster: Cluster, kubectl: Kubectl, kube_router: Path) -> Iterator[Lab]:
    work = Path(tempfile.mkdtemp(prefix="envisolation-lab-"))  # kept: kube-router.log, state dumps
    with Lab(kubectl, kube_router, work, int(cluster.state()["ports"]["apiserver"])) as lab:
        yield lab


@pytest.fixture(scope="module")
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
    args = getattr(item, "funcargs", {})
    lab: Lab | None = args.get("lab")
    if lab is not None and lab.router is not None:
        report.sections.append(("kube-router log (tail)", lab.router.tail(40)))
    op: Operator | None = args.get("operator")
    if op is not None:
        report.sections.append(("operator log (tail)", tail(op.log, 40)))


__all__ = ["ROOT", "Kubectl", "Lab", "record"]
