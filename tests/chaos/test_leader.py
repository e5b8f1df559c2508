"""Two replicas with leader election (runtime/leader.py): one writer, fast hand-over.

Every instance names itself in its user agent (`envisolation/<version> (<identity>)`), so
the audit log says which replica wrote what. Scenarios 13-17 of the chaos table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.conftest import Kubectl, Operator, eventually
from tests.chaos.conftest import Audit, Chaos, Scenario, record
from tests.chaos.oracle import check, converge
from tests.chaos.test_chaos import PER_NS, settle

pytestmark = pytest.mark.chaos
DEFAULTS = (15.0, 10.0, 2.0)  # lease duration, renew deadline, retry period (the product's)
FAST = (6.0, 4.0, 1.0)


@dataclass
class Pair:
    """Replicas of one operator, electing on one Lease in `default`."""

    kubectl: Kubectl
    audit: Audit
    lease: str
    replicas: dict[str, Operator]

    def holder(self) -> str:
        res = self.kubectl("get", "lease", "-n", "default", self.lease, "-o", "json", check=False)
        if res.returncode != 0:
            return ""
        return str(json.loads(res.stdout)["spec"].get("holderIdentity") or "")

    def leader(self) -> tuple[str, Operator]:
        who = eventually(lambda: self.holder() in self.replicas and self.holder(), timeout=60)
        return who, self.replicas[who]

    def standby(self, leader: str) -> tuple[str, Operator]:
        return next((i, op) for i, op in self.replicas.items() if i != leader)

    def writes(self, since: int, identity: str, **kw: Any) -> list[dict[str, Any]]:
        """Write requests of one replica (any resource, by default), from the audit log."""
        kw = {"resource": None, "subresource": None, **kw}
        return [e for e in self.audit.writes(since, **kw)
                if f"({identity})" in str(e.get("userAgent", ""))]  # fmt: skip

    def policy_writes(self, since: int, identity: str, **kw: Any) -> int:
        return len(self.writes(since, identity, resource="networkpolicies", subresource="", **kw))


@pytest.fixture
def pair(operators: Callable[[], Operator], kubectl: Kubectl, audit: Audit) -> Callable[..., Pair]:
    def make(names: tuple[str, ...] = ("a", "b"), timing: tuple[float, ...] = DEFAULTS) -> Pair:
        tag = secrets.token_hex(3)
        lease = f"envisolation-{tag}"
        replicas = {}
        for n in names:
            op = operators()
            op.args = ("--leader-elect", "--lease-namespace", "default", "--lease-name", lease,
                       "--lease-duration", str(timing[0]), "--renew-deadline", str(timing[1]),
                       "--retry-period", str(timing[2]))  # fmt: skip
            op.env = {"POD_NAME": f"{n}-{tag}"}
            replicas[f"{n}-{tag}"] = op
        return Pair(kubectl, audit, lease, replicas)

    return make


def _stamp(e: dict[str, Any]) -> float:
    text = str(e.get("requestReceivedTimestamp"))
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# 13 -----------------------------------------------------------------------------------------


def test_two_replicas_one_leads_and_the_standby_never_writes(
    scenario: Scenario, pair: Callable[..., Pair], audit: Audit, kubectl: Kubectl
) -> None:
    p = pair()
    mark = audit.mark()
    for op in p.replicas.values():
        op.start()
    leader_id, leader = p.leader()
    standby_id, standby = p.standby(leader_id)
    eventually(lambda: standby.ready() and leader.ready(), timeout=30)
    assert leader.metric("envisolation_leader") == 1
    assert standby.metric("envisolation_leader") == 0
    spaces = scenario.make(10)
    scenario.apply_cr(deletionPolicy="Delete")
    _, took = converge(kubectl, audit, scenario.label)
    scenario.relabel(spaces[0], "prod")
    converge(kubectl, audit, scenario.label)
    settle(audit)
    idle = audit.mark()
    time.sleep(60)
    leader_idle = [e for e in p.writes(idle, leader_id)
                   if (e.get("objectRef") or {}).get("resource") != "leases"]  # fmt: skip
    standby_all = p.writes(mark, standby_id, succeeded=False)
    kopf = [e for e in audit.writes(mark, resource=None, subresource=None, succeeded=False)
            if str(e.get("userAgent", "")).startswith("kopf/")]  # fmt: skip
    record("13 two replicas, idle 60 s", converged_s=took, leader_writes_idle=len(leader_idle),
           standby_writes=len(standby_all), kopf_writes=len(kopf))  # fmt: skip
    assert standby_all == [], "the standby sent no write at all (not even a refused one)"
    assert leader_idle == [], "steady state: only Lease renewals"
    assert kopf == [], "Kopf writes nothing in any replica"
    fin = kubectl.json("get", "enviso", scenario.iso)["metadata"].get("finalizers")
    assert fin == ["envisolation.io/finalizer"], "the leader keeps the finalizer of Delete"


# 14 -----------------------------------------------------------------------------------------


def test_the_leader_killed_mid_rollout_the_standby_finishes_exactly_the_work_left(
    scenario: Scenario, pair: Callable[..., Pair], audit: Audit, kubectl: Kubectl
) -> None:
    p = pair()
    for op in p.replicas.values():
        op.start()
    leader_id, leader = p.leader()
    standby_id, standby = p.standby(leader_id)
    eventually(standby.ready, timeout=30)
    n = 300
    scenario.make(n)
    mark = audit.mark()
    scenario.apply_cr()
    eventually(lambda: p.policy_writes(mark, leader_id) >= 300, timeout=60, interval=0.02)
    assert leader.proc is not None
    killed_at = time.time()
    os.killpg(leader.proc.pid, signal.SIGKILL)
    leader.proc.wait()
    before = p.policy_writes(mark, leader_id)
    assert before < n * PER_NS, "the rollout finished before the kill; raise n"
    present = sum(
        1
        for x in kubectl.json("get", "networkpolicies", "-A", "-l", "app.kubernetes.io/managed-by")[
            "items"
        ]
        if x["metadata"]["namespace"].startswith(scenario.iso)
    )
    snap, _ = converge(kubectl, audit, scenario.label, timeout=120)
    converged_s = round(time.time() - killed_at, 1)
    settle(audit)
    taken = p.writes(mark, standby_id, resource="networkpolicies", subresource="")
    first = min(_stamp(e) for e in taken)
    takeover_s = round(first - killed_at, 1)
    record("14 leader SIGKILL mid-rollout", killed_after=before, present=present,
           standby_writes=len(taken), left=n * PER_NS - present, takeover_s=takeover_s,
           converged_s=converged_s)  # fmt: skip
    assert snap.policies == n * PER_NS
    assert len(taken) == n * PER_NS - present, "the work left, none repeated"
    lease, _, retry = DEFAULTS
    assert takeover_s <= lease + retry + 3, "the standby took over within a lease"
    assert p.holder() == standby_id


# 15 -----------------------------------------------------------------------------------------


def test_a_paused_leader_that_resumes_writes_nothing_and_exits(
    scenario: Scenario, pair: Callable[..., Pair], audit: Audit, kubectl: Kubectl
) -> None:
    p = pair(timing=FAST)
    for op in p.replicas.values():
        op.start()
    leader_id, leader = p.leader()
    standby_id, _ = p.standby(leader_id)
    spaces = scenario.make(6)
    scenario.apply_cr()
    converge(kubectl, audit, scenario.label)
    settle(audit)
    assert leader.proc is not None
    mark = audit.mark()
    os.killpg(leader.proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        eventually(lambda: p.holder() == standby_id, timeout=30)
        taken_s = round(time.monotonic() - stopped, 1)
        # Work the paused leader will see when it resumes, already done by the new one.
        scenario.relabel(spaces[0], "prod")
        kubectl("delete", "networkpolicy", "-n", spaces[1], "envisolation-dns")
        converge(kubectl, audit, scenario.label)
    finally:
        os.killpg(leader.proc.pid, signal.SIGCONT)
    code = eventually(leader.proc.poll, timeout=30)
    settle(audit)
    check(kubectl, audit, scenario.label)
    sent = p.writes(mark, leader_id, succeeded=False)
    record("15 leader paused past its lease", taken_over_s=taken_s, old_leader_writes=len(sent),
           old_leader_exit=code)  # fmt: skip
    assert sent == [], "not a single request from the old leader after it was paused"
    assert code == 3, "it exits so Kubernetes restarts it as a standby"
    assert "could not renew the lease in time" in leader.log.read_text()


# 16 -----------------------------------------------------------------------------------------


def test_apiserver_restart_and_a_forced_410_with_two_replicas_keep_one_writer(
    scenario: Scenario, pair: Callable[..., Pair], audit: Audit, kubectl: Kubectl, chaos: Chaos
) -> None:
    p = pair()
    for op in p.replicas.values():
        op.start()
    leader_id, _ = p.leader()
    spaces = scenario.make(4)
    scenario.apply_cr()
    converge(kubectl, audit, scenario.label)
    settle(audit)
    pids = [op.proc.pid for op in p.replicas.values() if op.proc is not None]
    mark = audit.mark()
    for pid in pids:  # neither replica may see what happens next
        os.killpg(pid, signal.SIGSTOP)
    try:
        chaos.delete_behind_a_410(spaces[0], "envisolation-same-segment", spaces[1])
    finally:
        for pid in pids:
            os.killpg(pid, signal.SIGCONT)
    eventually(lambda: "envisolation-same-segment" in kubectl.policies(spaces[0]), timeout=60)
    converge(kubectl, audit, scenario.label)
    settle(audit)
    writers = {i: p.policy_writes(mark, i) for i in p.replicas}
    record("16 apiserver restart + 410, two replicas", writes=writers,
           leader_kept=p.holder() == leader_id)  # fmt: skip
    assert sum(writers.values()) == 1, "only the deleted policy is written back"
    assert sum(1 for w in writers.values() if w) == 1, "by one replica"


# 17 -----------------------------------------------------------------------------------------


def test_a_rolling_update_hands_over_in_about_a_retry_period(
    scenario: Scenario, pair: Callable[..., Pair], audit: Audit, kubectl: Kubectl
) -> None:
    p = pair(names=("old-a", "old-b", "new"))
    ids = list(p.replicas)
    for i in ids[:2]:
        p.replicas[i].start()
    leader_id, leader = p.leader()
    spaces = scenario.make(6)
    scenario.apply_cr()
    converge(kubectl, audit, scenario.label)
    settle(audit)
    new = p.replicas[ids[2]]
    new.start()
    eventually(new.ready, timeout=30)  # the Deployment stops an old pod only now
    mark = audit.mark()
    t0 = time.monotonic()
    leader.stop(signal.SIGTERM)
    successor = eventually(lambda: p.holder() not in ("", leader_id) and p.holder(), timeout=30)
    handover_s = round(time.monotonic() - t0, 1)
    settle(audit)
    takeover = p.policy_writes(mark, successor)  # nothing changed: it plans from memory
    scenario.relabel(spaces[0], "prod")
    _, took = converge(kubectl, audit, scenario.label)
    settle(audit)
    old = p.writes(mark, leader_id, resource="networkpolicies", subresource="", succeeded=False)
    record("17 rolling update (SIGTERM)", handover_s=handover_s, converged_after_s=took,
           successor=successor.split("-")[0], old_leader_writes=len(old),
           takeover_writes=takeover)  # fmt: skip
    assert takeover == 0, "a take-over with nothing changed writes nothing"
    assert "released the lease" in leader.log.read_text()
    _, _, retry = DEFAULTS
    assert handover_s <= 2 * retry + 1, "released on SIGTERM: no waiting out the lease"
    assert old == []
