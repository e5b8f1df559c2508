"""Eleven faults, one invariant (oracle.py); two replicas with leader election are in
test_leader.py. Each scenario records its convergence time and
the API writes the operator made (from the audit log); `make chaos` prints the table."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.api.conftest import Kubectl, Operator, eventually
from tests.chaos.conftest import Audit, Chaos, Scenario, record
from tests.chaos.oracle import check, converge

pytestmark = pytest.mark.chaos
PER_NS = 3  # default-deny, same-segment, dns with the scenarios' default spec


def settle(audit: Audit, quiet: float = 3.0, timeout: float = 60.0) -> None:
    """Wait until the operator has made no policy write for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    mark = audit.mark()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = audit.mark()
        if audit.count(mark) == 0:
            return
        mark = now
    raise AssertionError(f"the operator kept writing for {timeout}s")


# 1 ------------------------------------------------------------------------------------------


def test_sigkill_mid_rollout_resumes_with_exactly_the_writes_left(
    scenario: Scenario, operators: Callable[[], Operator], audit: Audit, kubectl: Kubectl
) -> None:
    n = 300
    scenario.make(n)
    op = operators()
    op.start()
    mark = audit.mark()
    scenario.apply_cr()
    k = 300  # of n * PER_NS = 900 writes
    eventually(lambda: audit.count(mark) >= k, timeout=60, interval=0.02)
    op.stop(signal.SIGKILL)
    before = audit.count(mark)
    aborted = audit.count(mark, succeeded=False) - before  # in flight at the kill (504)
    assert before < n * PER_NS, "the rollout finished before the kill; raise n"
    present = sum(
        1
        for p in kubectl.json("get", "networkpolicies", "-A", "-l", "app.kubernetes.io/managed-by")[
            "items"
        ]
        if p["metadata"]["namespace"].startswith(scenario.iso)
    )
    restart = audit.mark()
    t0 = time.monotonic()
    op.start()
    snap, _ = converge(kubectl, audit, scenario.label, timeout=120)
    settle(audit)
    after = audit.count(restart)
    record("1 SIGKILL mid-rollout", killed_after=before, aborted=aborted, present=present,
           writes_after=after, left=n * PER_NS - present,
           converged_s=round(time.monotonic() - t0, 1))  # fmt: skip
    # No policy written twice before the kill; a request in flight at the kill may have
    # landed although the API server logged it as aborted (504).
    assert before <= present <= before + aborted
    assert snap.policies == n * PER_NS
    assert after == n * PER_NS - present


# 2 ------------------------------------------------------------------------------------------


def test_changes_while_down_converge_on_start(
    scenario: Scenario, operator: Operator, audit: Audit, kubectl: Kubectl
) -> None:
    spaces = scenario.make(12)
    scenario.apply_cr()
    before, _ = converge(kubectl, audit, scenario.label)
    settle(audit)
    operator.stop()
    scenario.relabel(spaces[0], "prod")
    scenario.relabel(spaces[1], "dev")
    fresh = scenario.make(3, stem="new")
    kubectl("delete", "namespace", spaces[2], spaces[3], "--wait=false")
    kubectl("delete", "networkpolicy", "-n", spaces[4], "envisolation-default-deny")
    kubectl("delete", "networkpolicy", "-n", spaces[5], "envisolation-dns")
    edit = {"spec": {"podSelector": {"matchLabels": {"edited": "by-hand"}}}}
    kubectl("patch", "networkpolicy", "-n", spaces[6], "envisolation-same-segment",
            "--type=merge", "-p", json.dumps(edit))  # fmt: skip
    scenario.apply_cr(dns={"enabled": False})  # every dns policy must go
    mark = audit.mark()
    operator.start()
    snap, took = converge(kubectl, audit, scenario.label, timeout=30)
    settle(audit)
    writes = audit.count(mark)
    kept = spaces[4:]
    record("2 changes while down", converged_s=took, writes=writes)
    assert fresh[0] in {ns for ns, _ in snap.uids}
    unchanged = {
        k: uid
        for k, uid in before.uids.items()
        if k[0] in kept
        and k[1] != "envisolation-dns"
        and k != (spaces[4], "envisolation-default-deny")
    }
    assert unchanged and all(snap.uids.get(k) == uid for k, uid in unchanged.items()), "stable UIDs"


# 3 ------------------------------------------------------------------------------------------


def test_forced_410_relist_restores_a_policy_deleted_while_the_watch_was_cut(
    scenario: Scenario, operator: Operator, audit: Audit, kubectl: Kubectl, chaos: Chaos
) -> None:
    spaces = scenario.make(4)
    scenario.apply_cr()
    converge(kubectl, audit, scenario.label)
    settle(audit)
    assert operator.proc is not None
    operator.proc.send_signal(signal.SIGSTOP)  # the operator cannot see what happens next
    try:
        chaos.delete_behind_a_410(spaces[0], "envisolation-same-segment", spaces[1])
    finally:
        operator.proc.send_signal(signal.SIGCONT)
    mark = audit.mark()
    t0 = time.monotonic()
    eventually(lambda: "envisolation-same-segment" in kubectl.policies(spaces[0]), timeout=60)
    converge(kubectl, audit, scenario.label)
    settle(audit)
    writes = audit.count(mark)
    record("3 forced 410", restored_s=round(time.monotonic() - t0, 1), writes=writes)
    assert writes == 1, "only the deleted policy is written back"
    assert "a watch relisted" in operator.log.read_text()


# 4 ------------------------------------------------------------------------------------------


def _create_namespaces(scenario: Scenario, names: list[str], done: list[str]) -> None:
    for i, n in enumerate(names):
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": n, "labels": {scenario.label: ("dev", "prod")[i % 2]}}}  # fmt: skip
        while True:
            res = scenario.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
            if res.returncode == 0:
                break
            time.sleep(0.2)  # the API server is down: a user would retry too
        done.append(n)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_apiserver_restart_during_namespace_creations(
    how: str,
    scenario: Scenario,
    operator: Operator,
    audit: Audit,
    kubectl: Kubectl,
    chaos: Chaos,
) -> None:
    scenario.apply_cr()
    names = [f"{scenario.iso}-burst-{i}" for i in range(200)]
    scenario.namespaces += names
    done: list[str] = []
    mark = audit.mark()
    t = threading.Thread(target=_create_namespaces, args=(scenario, names, done))
    t.start()
    try:
        eventually(lambda: len(done) >= 60, timeout=120, interval=0.1)
        if how == "SIGKILL":
            chaos.hack("kill", "kube-apiserver")
        chaos.hack("restart", "kube-apiserver")
    finally:
        t.join(timeout=300)
    snap, took = converge(kubectl, audit, scenario.label, timeout=90)
    settle(audit)
    writes = audit.count(mark)
    record(f"4 apiserver {how} during creations", converged_s=took, writes=writes,
           needed=200 * PER_NS)  # fmt: skip
    assert operator.starts == 1 and operator.healthy()
    assert snap.policies == 200 * PER_NS
    assert writes <= 200 * PER_NS + 20, "at most a few writes repeated after the restart"


# 5 ------------------------------------------------------------------------------------------


FREEZE_S = 130  # past the LIST timeout, so that every timeout is seen to fire


def _time_to_fail(cfg: Any, call: Callable[[Any], Any], warm: bool,
                  ready: threading.Barrier, frozen: threading.Event) -> tuple[float, str]:  # fmt: skip
    """Seconds until the operator's own API client gives up on `call` once the API server
    is frozen, and its error. `warm`: over a connection opened (and pooled) before the
    freeze, as the operator's are; else over a new one (connect and TLS handshake).
    `cfg` is loaded once by the caller: the kubernetes client's loader writes embedded
    certificates to temporary files it shares between threads, and names a file before it
    has written it (three threads loading at once once got an empty certificate)."""
    from envisolation.runtime.api import ApiError
    from envisolation.runtime.client import Kube

    async def go() -> tuple[float, str]:
        kube = Kube(cfg)
        try:
            if warm:
                await kube.request("get", "GET", "/version")  # the connection stays pooled
            await asyncio.to_thread(ready.wait)
            await asyncio.to_thread(frozen.wait)
            t0 = time.monotonic()
            try:
                await call(kube)
            except ApiError as e:
                return time.monotonic() - t0, str(e)
            return time.monotonic() - t0, "answered"
        finally:
            await kube.aclose()

    return asyncio.run(go())


def _watch_errors(operator: Operator) -> float:
    """envisolation_api_errors_total{verb="watch"}: one per watch that ended in error."""
    with urllib.request.urlopen(f"http://{operator.metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("envisolation_api_errors_total{") and 'verb="watch"' in line)  # fmt: skip


def test_apiserver_frozen_then_resumed(
    scenario: Scenario, operator: Operator, audit: Audit, kubectl: Kubectl, chaos: Chaos
) -> None:
    """The API server frozen (SIGSTOP) past every client timeout: over a pooled connection
    a write gives up after 30 s and a LIST page after 120 s, a new connection after 10 s
    (its TLS handshake never completes); every watch of the operator notices within 75 s
    (its read timeout); after the resume the operator converges without a restart."""
    spaces = scenario.make(6)
    scenario.apply_cr()
    converge(kubectl, audit, scenario.label)
    settle(audit)
    probe = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "chaos-probe", "namespace": spaces[0]},
             "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}  # fmt: skip
    calls: dict[str, tuple[Callable[[Any], Any], bool]] = {
        "write": (lambda kube: kube.apply_policy(probe), True),
        "list": (lambda kube: kube.list_each("namespaces", lambda _: None), True),
        "connect": (lambda kube: kube.apply_policy(probe), False),
    }
    failed: dict[str, tuple[float, str]] = {}
    ready, frozen = threading.Barrier(len(calls) + 1), threading.Event()
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubectl.cluster.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
    crashed: dict[str, BaseException] = {}

    def run(key: str, call: Callable[[Any], Any], warm: bool) -> None:
        try:
            failed[key] = _time_to_fail(cfg, call, warm, ready, frozen)
        except BaseException as e:  # shown by the assertion below, not as a thread warning
            crashed[key] = e
            ready.abort()

    threads = [threading.Thread(target=run, args=(k, c, w)) for k, (c, w) in calls.items()]
    for t in threads:
        t.start()
    try:
        ready.wait(timeout=60)  # every client has its connection (or none, for "connect")
    except threading.BrokenBarrierError:
        pytest.fail(f"a client did not get ready: {crashed!r}")
    broken_before = _watch_errors(operator)
    chaos.hack("stop", "kube-apiserver")
    stopped = time.monotonic()
    frozen.set()
    # the operator's watches (namespaces, policies, hostNetwork pods) end on their own
    noticed = eventually(lambda: _watch_errors(operator) - broken_before >= 3
                         and time.monotonic() - stopped, timeout=FREEZE_S - 10, interval=0.5)  # fmt: skip
    time.sleep(max(0.0, FREEZE_S - (time.monotonic() - stopped)))
    chaos.hack("cont", "kube-apiserver")
    for t in threads:
        t.join(timeout=60)
    eventually(chaos.api_ready, timeout=60)
    mark = audit.mark()
    scenario.relabel(spaces[0], "prod")
    scenario.make(2, stem="after")
    _, took = converge(kubectl, audit, scenario.label, timeout=60)
    settle(audit)
    writes = audit.count(mark)
    record(f"5 apiserver frozen {FREEZE_S}s", converged_s=took, writes=writes,
           watches_noticed_s=round(noticed, 1), write_gave_up_s=round(failed["write"][0], 1),
           list_gave_up_s=round(failed["list"][0], 1),
           new_connection_gave_up_s=round(failed["connect"][0], 1))  # fmt: skip
    assert operator.starts == 1 and operator.healthy()
    assert 30 <= failed["write"][0] < 36, failed["write"]  # CALL_TIMEOUT, on a pooled connection
    assert 120 <= failed["list"][0] < 126, failed["list"]  # LIST_TIMEOUT
    assert 10 <= failed["connect"][0] < 16, failed["connect"]  # CONNECT_TIMEOUT (TCP + TLS)
    assert all("connection failed" in f[1] for f in failed.values()), failed
    assert noticed <= 75 + 5, f"the watches noticed the frozen server after {noticed:.1f}s"


# 6 ------------------------------------------------------------------------------------------


def test_etcd_restart_with_fsync_keeps_data_and_invariant(
    scenario: Scenario, operator: Operator, audit: Audit, kubectl: Kubectl, chaos: Chaos
) -> None:
    spaces = scenario.make(9)
    scenario.apply_cr()
    before, _ = converge(kubectl, audit, scenario.label)
    settle(audit)
    mark = audit.mark()
    chaos.hack("restart", "etcd", "--fsync")
    eventually(chaos.api_ready, timeout=60)
    after, _ = converge(kubectl, audit, scenario.label, timeout=60)
    assert after.uids == before.uids, "the same objects survived the restart"
    settle(audit)
    idle = audit.count(mark)
    scenario.relabel(spaces[0], "prod")
    _, took = converge(kubectl, audit, scenario.label)
    record("6 etcd restart (fsync)", writes_after_restart=idle, converged_after_change_s=took)
    assert idle == 0


# 7 ------------------------------------------------------------------------------------------


def test_a_fighting_field_manager_gets_a_bounded_answer_and_argo_reapply_writes_nothing(
    scenario: Scenario, operator: Operator, audit: Audit, kubectl: Kubectl
) -> None:
    spaces = scenario.make(3)
    scenario.apply_cr()
    converge(kubectl, audit, scenario.label)
    settle(audit)
    target = spaces[0]
    fight = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "envisolation-same-segment", "namespace": target},
        "spec": {"podSelector": {"matchLabels": {"fighter": "was-here"}}},
    }
    mark = audit.mark()
    fights = 0
    t_end = time.monotonic() + 30
    while time.monotonic() < t_end:
        kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=fighter",
                "-f", "-", input=json.dumps(fight))  # fmt: skip
        fights += 1
        time.sleep(1)
    answered = audit.count(mark)
    _, took = converge(kubectl, audit, scenario.label)
    # Argo CD re-applying the unchanged CR every 5 s for 30 s: no policy write at all.
    settle(audit)
    mark = audit.mark()
    for _ in range(6):
        scenario.apply_cr()
        time.sleep(5)
    reapply = audit.count(mark)
    record("7 fighter / argo re-apply", fighter_writes=fights, operator_writes=answered,
           converged_s=took, reapply_writes=reapply)  # fmt: skip
    assert answered <= fights + 2, "one repair per fight at most: no hot loop"
    assert reapply == 0


# 8 ------------------------------------------------------------------------------------------


def test_twenty_concurrent_clients(
    scenario: Scenario, operator: Operator, audit: Audit, kubectl: Kubectl
) -> None:
    spaces = scenario.make(10)
    scenario.apply_cr()
    converge(kubectl, audit, scenario.label)
    errors: list[str] = []
    specs = [
        {},
        {"dns": {"enabled": False}},
        {"isolate": ["Ingress"]},
        {"allow": [{"name": "dev-to-prod", "segments": ["prod"],
                    "ingress": [{"from": [{"segment": "dev"}], "ports": [{"port": 443}]}]}]},
    ]  # fmt: skip

    def client(i: int) -> None:
        rnd = random.Random(i)
        for _ in range(5):
            if i < 10:
                body = json.dumps(scenario.cr(**rnd.choice(specs)))
                res = kubectl("apply", "-f", "-", input=body, check=False)
            else:
                ns = rnd.choice(spaces)
                seg = rnd.choice(["dev", "test", "prod"])
                res = kubectl("label", "namespace", ns, f"{scenario.label}={seg}", "--overwrite",
                              check=False)  # fmt: skip
            if res.returncode != 0 and "the object has been modified" not in res.stderr:
                errors.append(res.stderr)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, took = converge(kubectl, audit, scenario.label)
    record("8 twenty concurrent clients", converged_s=took,
           total_s=round(time.monotonic() - t0, 1), client_errors=len(errors))  # fmt: skip
    assert not errors, errors[:3]
    assert operator.starts == 1 and operator.healthy()


# 9 ------------------------------------------------------------------------------------------


def test_the_finalizer_removed_by_hand_is_put_back_without_policy_writes(
    scenario: Scenario, operator: Operator, audit: Audit, kubectl: Kubectl
) -> None:
    scenario.make(4)
    scenario.apply_cr(deletionPolicy="Delete")
    converge(kubectl, audit, scenario.label)

    def meta() -> dict[str, Any]:
        return dict(kubectl.json("get", "enviso", scenario.iso)["metadata"])

    def held() -> bool:
        return "envisolation.io/finalizer" in (meta().get("finalizers") or [])

    eventually(held)
    kopf_state = [
        k for k in meta().get("annotations") or {} if k.startswith(("kopf", "envisolation.io"))
    ]
    assert kopf_state == [], "Kopf keeps no state on the resource (it only reads it)"
    settle(audit)
    mark = audit.mark()
    kubectl("patch", "enviso", scenario.iso, "--type=json",
            "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')  # fmt: skip
    t0 = time.monotonic()
    eventually(held, timeout=30)
    took = round(time.monotonic() - t0, 1)
    settle(audit)
    check(kubectl, audit, scenario.label)
    writes = audit.count(mark)
    patches = audit.count(mark, resource="environmentisolations", subresource="")
    record("9 finalizer removed by hand", restored_s=took, policy_writes=writes, cr_patches=patches)
    assert patches == 1, "the operator put its finalizer back, once"
    assert writes == 0


# 10 -----------------------------------------------------------------------------------------


def test_a_namespace_stuck_terminating_gets_no_writes_and_no_hot_loop(
    scenario: Scenario, operator: Operator, audit: Audit, kubectl: Kubectl
) -> None:
    scenario.apply_cr()
    (stuck,) = scenario.make(1, segments=("dev",), stem="stuck")
    kubectl("patch", "namespace", stuck, "--type=merge",
            "-p", '{"metadata": {"finalizers": ["chaos.test/hold"]}}')  # fmt: skip
    scenario.make(2)
    converge(kubectl, audit, scenario.label)
    settle(audit)

    def others_gone() -> bool:  # earlier scenarios' namespaces would wake the operator too
        items = kubectl.json("get", "namespaces")["items"]
        return not [n for n in items if n["status"].get("phase") == "Terminating"]

    eventually(others_gone, timeout=180, interval=2)
    mark = audit.mark()
    passes = operator.metric("envisolation_reconcile_duration_seconds_count")
    kubectl("delete", "namespace", stuck, "--wait=false")
    eventually(lambda: kubectl.policies(stuck) == {}, timeout=60)  # the namespace controller
    time.sleep(20)
    into = audit.count(mark, namespace=stuck, resource=None, subresource=None, succeeded=False)
    loops = operator.metric("envisolation_reconcile_duration_seconds_count") - passes
    phase = kubectl.json("get", "namespace", stuck)["status"]["phase"]
    assert phase == "Terminating"
    check(kubectl, audit, scenario.label)
    kubectl("patch", "namespace", stuck, "--type=merge", "-p", '{"metadata": {"finalizers": null}}')
    t0 = time.monotonic()
    eventually(lambda: kubectl("get", "namespace", stuck, check=False).returncode != 0, timeout=60)
    record("10 stuck Terminating", writes_into=into, passes_in_20s=loops,
           deleted_after_release_s=round(time.monotonic() - t0, 1))  # fmt: skip
    assert into == 0
    assert loops <= 5, "no hot loop while it hangs"


# 11 -----------------------------------------------------------------------------------------


def test_label_spoofing_widens_nothing_and_is_reported(
    scenario: Scenario, operator: Operator, audit: Audit, kubectl: Kubectl
) -> None:
    scenario.apply_cr(
        segments=[{"name": "dev", "namespaceSelector": {"matchLabels": {"team": "a"}}},
                  {"name": "prod"}],
        isolate=["Ingress"],
    )  # fmt: skip
    (member,) = scenario.make(1, segments=("dev",), stem="member", extra={"team": "a"})
    (spoofer,) = scenario.make(1, segments=("dev",), stem="spoofer")  # no team=a: excluded
    scenario.make(1, segments=("prod",), stem="prod")
    converge(kubectl, audit, scenario.label)
    assert kubectl.policies(spoofer) == {}, "an excluded namespace gets nothing"
    sneaky = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "envisolation-allow-sneaky", "namespace": member,
                     "labels": {"app.kubernetes.io/managed-by": "envisolation",
                                "envisolation.io/isolation": scenario.iso}},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]},
    }  # fmt: skip
    mark = audit.mark()
    kubectl.apply(json.dumps(sneaky))

    def reported() -> bool:
        status = kubectl.json("get", "enviso", scenario.iso).get("status") or {}
        events = kubectl("get", "events", "-A", "--field-selector",
                         "reason=ImpersonatedPolicy").stdout  # fmt: skip
        return bool(status.get("exposures")) and "envisolation-allow-sneaky" in events

    t0 = time.monotonic()
    eventually(reported, timeout=30)
    took = round(time.monotonic() - t0, 1)
    snap = check(kubectl, audit, scenario.label, allow_exposed=True)
    assert snap.exposed == [f"{scenario.iso}: prod->dev"], "reported as an exposure"
    touched = audit.count(mark, namespace=member, name="envisolation-allow-sneaky")
    assert touched == 0, "not adopted: neither rewritten nor deleted"
    assert "envisolation-allow-sneaky" in kubectl.policies(member)
    # The operator's own policies admit nothing from the excluded namespace.
    same = kubectl.policies(member)["envisolation-same-segment"]["spec"]
    peers = same["ingress"][0]["from"]
    assert all("team" in json.dumps(p) for p in peers), peers
    record("11 label spoofing", reported_s=took, writes_to_spoofed=touched)
