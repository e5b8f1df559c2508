"""Property tests over render and plan (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from envisolation.policy.plan import live_after, plan_namespace
from envisolation.policy.render import RenderContext, decide
from envisolation.spec import constants as c
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts
from envisolation.spec.selectors import LabelSelector, Requirement

SEGMENTS = ["dev", "test", "prod", "qa"]
CTX = RenderContext()


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    segs = draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4, unique=True))
    rules = []
    for i in range(draw(st.integers(0, 3))):
        target = draw(st.lists(st.sampled_from(segs), max_size=2, unique=True))
        peers = draw(st.lists(st.sampled_from(segs), min_size=1, max_size=2, unique=True))
        direction = draw(st.sampled_from(["ingress", "egress"]))
        key = "from" if direction == "ingress" else "to"
        rules.append(
            {
                "name": f"r{i}",
                "segments": target,
                direction: [{key: [{"segment": p} for p in peers], "ports": [{"port": 80 + i}]}],
            }
        )
    return {
        "segments": [
            {
                "name": s,
                "enforcement": draw(st.sampled_from(["Enforce", "Enforce", "Audit", "Off"])),
            }
            for s in segs
        ],
        "isolate": draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]])),
        "sameSegment": draw(st.sampled_from(["Allow", "Deny"])),
        "dns": {"enabled": draw(st.booleans())},
        "allow": rules,
        "excludeNamespaces": draw(
            st.lists(st.sampled_from(["n0", "n1", "n2"]), max_size=2, unique=True)
        ),
    }


namespaces = st.lists(
    st.tuples(st.sampled_from([*SEGMENTS, None]), st.booleans()), min_size=1, max_size=8
).map(
    lambda xs: [
        NamespaceFacts.from_body(
            {
                "metadata": {"name": f"n{i}", "labels": {"environment": s} if s else {}},
                "status": {"phase": "Terminating" if term else "Active"},
            }
        )
        for i, (s, term) in enumerate(xs)
    ]
)


def build(spec: dict[str, Any]) -> EnvironmentIsolation:
    return EnvironmentIsolation.from_body({"metadata": {"name": "env"}, "spec": spec})


@settings(max_examples=150, deadline=None)
@given(specs(), namespaces)
def test_render_is_deterministic(spec: dict[str, Any], nss: list[NamespaceFacts]) -> None:
    iso = build(spec)
    first = [decide(n, [iso], CTX) for n in nss]
    again = [decide(n, [build(spec)], CTX) for n in reversed(nss)]
    assert first == list(reversed(again))


@settings(max_examples=150, deadline=None)
@given(specs(), namespaces)
def test_every_enforced_namespace_has_exactly_one_default_deny(
    spec: dict[str, Any], nss: list[NamespaceFacts]
) -> None:
    iso = build(spec)
    for n in nss:
        d = decide(n, [iso], CTX)
        seg = iso.segment(n.label_map.get("environment", ""))
        enforced = (
            seg is not None
            and seg.enforcement.value == "Enforce"
            and not n.terminating
            and n.name not in iso.exclude_namespaces
        )
        denies = [p for p in d.desired if p["metadata"]["name"] == c.POLICY_DEFAULT_DENY]
        assert len(denies) == (1 if enforced else 0)


def _selector(d: dict[str, Any]) -> LabelSelector:
    reqs = tuple(
        Requirement(e["key"], e["operator"], tuple(e.get("values", ())))
        for e in d.get("matchExpressions", [])
    )
    return LabelSelector(tuple(d.get("matchLabels", {}).items()), reqs)


@settings(max_examples=150, deadline=None)
@given(specs(), namespaces)
def test_no_peer_selects_another_segment_unless_a_rule_names_it(
    spec: dict[str, Any], nss: list[NamespaceFacts]
) -> None:
    iso = build(spec)
    rules = {f"{c.POLICY_ALLOW_PREFIX}{r['name']}": r for r in spec["allow"]}
    for n in nss:
        d = decide(n, [iso], CTX)
        for policy in d.desired:
            name = policy["metadata"]["name"]
            if name == c.POLICY_DNS:
                continue
            allowed = {d.segment}
            if name in rules:
                rule = rules[name]
                body = rule.get("ingress") or rule.get("egress")
                allowed = {p["segment"] for r in body for p in r.get("from", r.get("to", []))}
            spec_ = policy["spec"]
            rule_list: list[Any] = [*spec_.get("ingress", []), *spec_.get("egress", [])]
            for r in rule_list:
                for peer in r.get("from", r.get("to", [])):
                    sel = _selector(peer["namespaceSelector"])
                    for other in nss:
                        if sel.matches(other.label_map):
                            assert other.label_map.get("environment") in allowed
                            assert other.name not in iso.exclude_namespaces


@settings(max_examples=150, deadline=None)
@given(specs(), specs(), namespaces)
def test_planning_twice_from_the_first_plans_result_yields_no_work(
    before: dict[str, Any], after: dict[str, Any], nss: list[NamespaceFacts]
) -> None:
    old, new = build(before), build(after)
    for n in nss:
        live = live_after(plan_namespace(decide(n, [old], CTX), [], {"env"}), [])
        plan = plan_namespace(decide(n, [new], CTX), live, {"env"})
        assert plan_namespace(decide(n, [new], CTX), live_after(plan, live), {"env"}).empty
