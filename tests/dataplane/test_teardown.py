"""Teardown leaves the host as it was: network namespaces, links, routes, iptables, ipsets.

Runs last in the tier (pytest takes the files in name order, and each earlier module's lab
is closed when its module ends): the host is compared with the snapshot taken before the
tier started. Then a lab that fails half-way (an exception with pods wired, kube-router
killed with SIGKILL) must clean up just as well.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

from tests.api.conftest import Cluster, Kubectl
from tests.dataplane import netns
from tests.dataplane.lab import Lab, Port, Probe


def diff(before: dict[str, str], after: dict[str, str]) -> str:
    out = []
    for key, was in before.items():
        if was != after[key]:
            out.append(f"{key}:\n  before: {was!r}\n  after:  {after[key]!r}")
    return "\n".join(out)


def test_earlier_labs_left_the_host_as_it_was(
    host_before: dict[str, str], kubectl: Kubectl
) -> None:
    after = netns.host_snapshot()
    assert after == host_before, diff(host_before, after)


def test_a_lab_that_fails_half_way_cleans_up(host_before: dict[str, str], cluster: Cluster,
                                              kubectl: Kubectl, kube_router: Path) -> None:  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="envisolation-lab-", dir=cluster.dir))
    pid = None
    failed = ""
    try:
        with Lab(kubectl, kube_router, work, int(cluster.state()["ports"]["apiserver"])) as lab:
            lab.namespace("teardown-a", {})
            a, b = lab.add_pods([("teardown-a", f"p{i}", {}, (Port("TCP", 80),)) for i in (1, 2)])
            lab.settle()
            assert lab.probe([Probe(a, b, "TCP", 80)]) == ["open"]
            assert lab.router is not None
            pid = lab.router.proc.pid
            assert any(n.startswith(lab.run) for n in netns.names())
            os.kill(pid, signal.SIGKILL)
            raise RuntimeError("half-way")
    except RuntimeError as e:
        failed = str(e)
    assert failed == "half-way"
    assert pid is not None and not Path(f"/proc/{pid}").exists(), "kube-router outlived its lab"
    after = netns.host_snapshot()
    assert after == host_before, diff(host_before, after)
