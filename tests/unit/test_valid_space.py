"""Properties over the whole accepted space (tests/unit/strategies.py): every valid spec
parses and renders to NetworkPolicies the analysis reads back, in any order of the
isolations, with exactly one default-deny where a segment is enforced; and reachability
over rich cluster states is independent of input order and only ever loses connections
when a policy isolates more. `event()` records which features each draw exercised
(`make unit PYTEST_ARGS=--hypothesis-show-statistics`; the shares are in tests/README.md)."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from envisolation.analysis.netpol import parse_policy
from envisolation.analysis.reachability import build, connlist
from envisolation.policy.render import NamespaceState, RenderContext, decide
from envisolation.spec import constants as c
from envisolation.spec.model import EnvironmentIsolation, InvalidSpec, NamespaceFacts
from tests.unit.strategies import cluster, isolations, namespaces


def _isolation_features(bodies: list[dict[str, Any]]) -> None:
    event(f"isolations: {len(bodies)}")
    keys = [b["spec"]["namespaceLabel"] for b in bodies]
    if len(set(keys)) < len(keys):
        event("two isolations share a label key")
    _features(json.dumps([b["spec"] for b in bodies]))


def _features(text: str) -> None:
    for needle, name in (('"In"', "operator In"), ('"NotIn"', "operator NotIn"),
                         ('"Exists"', "operator Exists"), ('"DoesNotExist"', "operator DoesNotExist"),
                         ('"ipBlock"', "ipBlock"), ('"except"', "ipBlock except"), ("::", "IPv6 ipBlock"),
                         ('"endPort"', "endPort"), ('"SCTP"', "SCTP"), ('"port": "', "named port"),
                         ('"Audit"', "Audit"), ('"Off"', "Off"), ('"podSelector"', "pod selector"),
                         ('"namespaceSelector"', "namespace selector"), ('"segment"', "segment peer")):  # fmt: skip
        if needle in text:
            event(f"has {name}")


@settings(max_examples=100, deadline=None)
@given(isolations(), namespaces(), st.booleans())
def test_every_valid_spec_parses_and_renders_policies_the_analysis_reads(
    bodies: list[dict[str, Any]], raw: list[dict[str, Any]], as_enforce: bool
) -> None:
    try:
        isos = [EnvironmentIsolation.from_body(b) for b in bodies]
    except InvalidSpec as e:  # the generator draws valid specs only: this is a bug in one
        event("spec: invalid")
        raise AssertionError(f"a valid spec was refused: {e}") from e
    event("spec: valid")
    _isolation_features(bodies)
    if as_enforce:
        event("as_enforce")
    ctx = RenderContext(as_enforce=as_enforce)
    facts = [NamespaceFacts.from_body(n) for n in raw]
    for ns in facts:
        d = decide(ns, isos, ctx)
        assert d == decide(ns, list(reversed(isos)), ctx), "the order of isolations matters"
        event(f"namespace state: {d.state.value}")
        for policy in d.desired:
            assert policy["metadata"]["namespace"] == ns.name
            assert policy["metadata"]["name"].startswith("envisolation-")
            parse_policy(policy)  # a NetworkPolicy the analysis reads back (else InvalidSpec)
        denies = [p for p in d.desired if p["metadata"]["name"] == c.POLICY_DEFAULT_DENY]
        if d.state is NamespaceState.CONFLICT:  # claimed twice: nothing is opened; closed
            names = [p["metadata"]["name"] for p in d.desired]  # unless the winner audits
            assert names in ([], [c.POLICY_DEFAULT_DENY]), names
        else:
            assert len(denies) == (1 if d.state is NamespaceState.ISOLATED else 0), d.state
        if d.state in (NamespaceState.AUDIT, NamespaceState.OFF):
            assert d.desired == () and not as_enforce


def _pairs(objs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    c_, _ = build(objs)
    return {(str(x.src), str(x.dst)): str(x.conns) for x in connlist(c_)}


@settings(max_examples=150, deadline=None)
@given(cluster(), st.randoms(use_true_random=False))
def test_reachability_does_not_depend_on_input_order(
    objs: list[dict[str, Any]], rnd: random.Random
) -> None:
    _features(json.dumps([o for o in objs if o["kind"] == "NetworkPolicy"]))
    shuffled = list(objs)
    rnd.shuffle(shuffled)
    assert _pairs(objs) == _pairs(shuffled)


@settings(max_examples=150, deadline=None)
@given(cluster(), st.sampled_from(("a", "b", "c")), st.sampled_from((["Ingress"], ["Egress"])))
def test_a_policy_that_only_isolates_never_adds_a_connection(
    objs: list[dict[str, Any]], ns: str, types: list[str]
) -> None:
    before = _pairs(objs)
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny", "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": types}}  # fmt: skip
    after = _pairs([*objs, deny])
    c_before, _ = build(objs)
    c_after, _ = build([*objs, deny])
    conns_before = {(str(x.src), str(x.dst)): x.conns for x in connlist(c_before)}
    for x in connlist(c_after):
        key = (str(x.src), str(x.dst))
        assert key in before, f"{key} appeared"
        assert x.conns <= conns_before[key], f"{key} widened"
    if len(after) < len(before):
        event("the deny-all removed a pair")
