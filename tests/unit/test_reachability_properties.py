"""Property tests for the reachability algebra (hypothesis)."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from envisolation.analysis.reachability import build, connlist

NAMESPACES = ["a", "b", "c"]
APPS = ["web", "api", "db"]

selector = st.one_of(
    st.just({}),
    st.sampled_from(APPS).map(lambda a: {"matchLabels": {"app": a}}),
    st.sampled_from(APPS).map(
        lambda a: {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": [a]}]}
    ),
)
ns_selector = st.one_of(
    st.just({}),
    st.sampled_from(NAMESPACES).map(lambda n: {"matchLabels": {"kubernetes.io/metadata.name": n}}),
)
peer = st.one_of(
    st.builds(lambda s: {"podSelector": s}, selector),
    st.builds(lambda s: {"namespaceSelector": s}, ns_selector),
    st.builds(lambda s, n: {"podSelector": s, "namespaceSelector": n}, selector, ns_selector),
    st.sampled_from(["10.0.0.0/8", "0.0.0.0/0", "192.168.1.0/24"]).map(
        lambda c: {"ipBlock": {"cidr": c}}
    ),
)
port = st.one_of(
    st.builds(lambda p: {"port": p}, st.sampled_from([53, 80, 443])),
    st.builds(lambda p: {"protocol": "UDP", "port": p}, st.sampled_from([53, 9000])),
    st.just({"port": 8000, "endPort": 8100}),
    st.just({"port": "http"}),
)
rule = st.fixed_dictionaries(
    {}, optional={"peers": st.lists(peer, max_size=2), "ports": st.lists(port, max_size=2)}
)


@st.composite
def policies(draw: st.DrawFn, i: int) -> dict[str, Any]:
    types = draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    spec: dict[str, Any] = {"podSelector": draw(selector), "policyTypes": types}
    for t, key in (("Ingress", "from"), ("Egress", "to")):
        if t in types:
            rules = draw(st.lists(rule, max_size=2))
            spec[t.lower()] = [
                {
                    **({key: r["peers"]} if "peers" in r else {}),
                    **({"ports": r["ports"]} if "ports" in r else {}),
                }
                for r in rules
            ]
    return {
        "kind": "NetworkPolicy",
        "metadata": {"name": f"p{i}", "namespace": draw(st.sampled_from(NAMESPACES))},
        "spec": spec,
    }


def workloads() -> list[dict[str, Any]]:
    out = []
    for ns in NAMESPACES:
        for app in APPS:
            out.append({"kind": "Deployment", "metadata": {"name": app, "namespace": ns},
                        "spec": {"template": {"metadata": {"labels": {"app": app}},
                                              "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}}})  # fmt: skip
    return out


def result(objs: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    cluster, _ = build(objs)
    return {(str(c.src), str(c.dst)): c.conns for c in connlist(cluster)}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=4).flatmap(
        lambda xs: st.tuples(*[policies(i) for i in range(len(xs))])
    ),
    st.randoms(),
)
def test_result_does_not_depend_on_the_order_of_policies_or_rules(
    pols: tuple[dict[str, Any], ...], rnd: random.Random
) -> None:
    shuffled = [dict(p, spec=dict(p["spec"])) for p in pols]
    for p in shuffled:
        for key in ("ingress", "egress"):
            if key in p["spec"]:
                p["spec"][key] = rnd.sample(p["spec"][key], len(p["spec"][key]))
    rnd.shuffle(shuffled)
    assert result(workloads() + list(pols)) == result(workloads() + shuffled)


def test_default_deny_alone_allows_nothing() -> None:
    denies = [{"kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": ns},
               "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}} for ns in NAMESPACES]  # fmt: skip
    assert result(workloads() + denies) == {}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=3).flatmap(
        lambda xs: st.tuples(*[policies(i) for i in range(len(xs))])
    ),
    policies(99),
)
def test_adding_a_policy_never_removes_a_connection_within_the_same_isolation(
    base: tuple[dict[str, Any], ...], extra: dict[str, Any]
) -> None:
    # Every pod is already isolated in both directions, so `extra` can only add.
    denies = [{"kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": ns},
               "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}} for ns in NAMESPACES]  # fmt: skip
    before = result(workloads() + denies + list(base))
    after = result(workloads() + denies + list(base) + [extra])
    for (src, dst), conns in before.items():
        # An external range may be split further by the new policy's ipBlocks: every
        # piece of it must keep at least what the whole had.
        pieces = (
            [(s, d) for (s, d) in after if d == dst and within(s, src)]
            if "[External]" in src
            else [(s, d) for (s, d) in after if s == src and within(d, dst)]
        )
        assert pieces, (src, dst)
        for pair in pieces:
            assert conns <= after[pair]


def within(piece: str, whole: str) -> bool:
    if "[External]" not in whole:
        return piece == whole
    if "[External]" not in piece:
        return False

    def bounds(text: str) -> tuple[int, int]:
        lo, hi = text.removesuffix("[External]").split("-")
        return int(ipaddress.IPv4Address(lo)), int(ipaddress.IPv4Address(hi))

    (a, b), (c, d) = bounds(piece), bounds(whole)
    return c <= a and b <= d
