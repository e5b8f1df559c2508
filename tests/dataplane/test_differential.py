"""Differential, by packets: generated cluster states, kube-router's verdicts == reachability's.

Each state (states.py, reproducible from its number) is created through the API on the
lab: namespaces, pods wired into network namespaces and NetworkPolicies; once kube-router
has synced (Lab.settle), every pod pair and every pod/external-address pair is probed on
every probed port, both ways, and each verdict is compared with `envisolation
reachability` of the same live state. No operator runs here: the policies are the
generated ones.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envisolation.analysis.netpol import External, Workload
from envisolation.analysis.reachability import Cluster, build
from tests.api.conftest import Kubectl
from tests.dataplane import kube_router_model as model
from tests.dataplane.conftest import record
from tests.dataplane.lab import OPEN, REFUSED, TIMEOUT, Endpoint, Lab, Port, Probe
from tests.dataplane.states import EXTERNALS, PROBED, generate
from tests.dataplane.verdicts import describe, expected

STATES = int(os.environ.get("ENVISOLATION_DATAPLANE_STATES", "24"))
FIRST_SEED = int(os.environ.get("ENVISOLATION_DATAPLANE_SEED", "1"))
TOTALS: dict[str, float] = dict.fromkeys(
    ("states", "probes", "open", "agree_with_reachability", "deviation_both_types",
     "deviation_egress_named_port", "deviation_unresolved_named_port", "deviation_named_port_aliasing", "settle_s", "probe_s"), 0)  # fmt: skip
ONE_AT_A_TIME = {
    "both_types": model.Deviations(True, False, False, False),
    "egress_named_port": model.Deviations(False, True, False, False),
    "unresolved_named_port": model.Deviations(False, False, True, False),
}


def endpoint(cluster: Cluster, ep: Endpoint) -> Workload | External:
    if not ep.is_pod:
        addr = int(ipaddress.IPv4Address(ep.ip))
        return External(addr, addr)
    return next(w for w in cluster.workloads if str(w) == f"{ep.key}[Pod]")


@pytest.fixture(scope="module")
def externals(lab: Lab) -> Iterator[list[Endpoint]]:
    ports = tuple(Port(proto, port) for proto, port in PROBED)
    yield [lab.add_external(f"x{i}", ports, addr) for i, addr in enumerate(EXTERNALS, 1)]
    if TOTALS["states"]:
        record("differential", **TOTALS)


@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + STATES))
def test_packets_agree_with_reachability(lab: Lab, kubectl: Kubectl, externals: list[Endpoint],
                                         seed: int, tmp_path: Path) -> None:  # fmt: skip
    st = generate(seed)
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
             for ns, labels in st.namespaces.items()]  # fmt: skip
    kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    for ns in st.namespaces:
        lab.namespace(ns, st.namespaces[ns])
    pods = lab.add_pods(st.pods)
    try:
        if st.policies:
            kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": st.policies}))
        settle_s = lab.settle()
        probes = [Probe(a, b, proto, port) for a in pods for b in pods if a is not b
                  for proto, port in PROBED]  # fmt: skip
        probes += [
            Probe(a, b, proto, port) for a in pods for b in externals for proto, port in PROBED
        ]
        probes += [
            Probe(b, a, proto, port) for a in pods for b in externals for proto, port in PROBED
        ]
        t0 = time.monotonic()
        got = lab.probe(probes)
        probe_s = time.monotonic() - t0
        want = expected(kubectl, tmp_path)
        cluster, _ = build(want.state)
        model_wrong, unexplained = [], []
        by_deviation = dict.fromkeys([*ONE_AT_A_TIME, "named_port_aliasing"], 0)
        for p, verdict in zip(probes, got, strict=True):
            src, dst = endpoint(cluster, p.src), endpoint(cluster, p.dst)
            spec = want.allows(p)
            if model.allows(cluster, src, dst, p.protocol, p.port, model.SPEC) != spec:
                model_wrong.append(
                    describe(
                        p,
                        want,
                        f"reachability says {spec}, the model without deviations not",
                        verdict,
                    )
                )
            least = model.allows(cluster, src, dst, p.protocol, p.port, model.KUBE_ROUTER_LEAST)
            most = model.allows(cluster, src, dst, p.protocol, p.port, model.KUBE_ROUTER_MOST)
            is_open = verdict == OPEN
            if is_open not in (least, most) or verdict not in (OPEN, REFUSED, TIMEOUT):
                said = (
                    f"reachability says {'allowed' if spec else 'denied'}, kube-router's model "
                    + (f"{'allowed' if least else 'denied'}" if least == most else "either")
                )
                unexplained.append(describe(p, want, said, verdict))
            elif is_open != spec:
                if least != most:
                    by_deviation["named_port_aliasing"] += 1
                for name, dev in ONE_AT_A_TIME.items():
                    if model.allows(cluster, src, dst, p.protocol, p.port, dev) != spec:
                        by_deviation[name] += 1
        context = (f"state {seed} (namespaces {st.namespaces}; pods "
                   f"{[(ns, n, lb, [(x.protocol, x.port, x.name) for x in ps]) for ns, n, lb, ps in st.pods]})\npolicies:\n"
                   + "\n".join(json.dumps(p) for p in st.policies))  # fmt: skip
        assert not model_wrong, (
            "the model disagrees with reachability:\n" + "\n".join(model_wrong) + "\n" + context
        )
        assert not unexplained, (f"{len(unexplained)} of {len(probes)} packet verdicts are neither reachability's "
                                 "nor a documented kube-router deviation:\n" + "\n".join(unexplained) + "\n" + context)  # fmt: skip
        TOTALS["states"] += 1
        TOTALS["probes"] += len(probes)
        TOTALS["open"] += sum(v == OPEN for v in got)
        TOTALS["agree_with_reachability"] += sum(
            (v == OPEN) == want.allows(p) for p, v in zip(probes, got, strict=True)
        )
        for name, n in by_deviation.items():
            TOTALS[f"deviation_{name}"] += n
        TOTALS["settle_s"] = round(TOTALS["settle_s"] + settle_s, 3)
        TOTALS["probe_s"] = round(TOTALS["probe_s"] + probe_s, 3)
    finally:
        lab.remove_pods([p.key for p in pods])
        for ns in st.namespaces:
            kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_kube_router_matches_ipblocks_against_pod_addresses(
    lab: Lab, kubectl: Kubectl, tmp_path: Path
) -> None:
    """Where kube-router and envisolation's analysis part, shown rather than papered over.

    The NetworkPolicy API leaves it to the implementation whether an ipBlock matches a
    pod's address. envisolation's reachability says ipBlocks match addresses outside the
    cluster only (as netpol-analyzer does); kube-router matches them against any source.
    If this test fails, kube-router changed: update tests/dataplane/README.md.
    """
    lab.namespace("ipb-src", {})
    lab.namespace("ipb-dst", {})
    ports = (Port("TCP", 80),)
    src, dst = lab.add_pods([("ipb-src", "client", {}, ports), ("ipb-dst", "server", {}, ports)])
    try:
        kubectl.apply(json.dumps({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "only-from-a-block", "namespace": "ipb-dst"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"ipBlock": {"cidr": "198.18.1.0/24"}}]}]},
        }))  # fmt: skip
        lab.settle()
        probe = Probe(src, dst, "TCP", 80)
        assert lab.probe([probe]) == ["open"], "kube-router admits the pod through the ipBlock"
        assert not expected(kubectl, tmp_path).allows(probe), (
            "reachability: ipBlocks never match pods"
        )
        record("ipblock_matches_pods", cidr="198.18.1.0/24", packets="open", reachability="denied")
    finally:
        lab.remove_pods([src.key, dst.key])
        for ns in ("ipb-src", "ipb-dst"):
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
