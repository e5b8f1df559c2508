"""Fuzzing the pure core (hypothesis): any input, valid or not, gives an answer, never a crash.

Specs are drawn as valid ones with random damage at random places (wrong types, hostile
strings, huge numbers, missing keys) and as arbitrary JSON. Whatever parses must render,
plan, report status and verify without an exception, and the same input must always give
the same output; whatever does not parse must fail with InvalidSpec naming a field.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from envisolation.analysis.netpol import parse_policy
from envisolation.analysis.verify import reports_from_objects
from envisolation.policy.conditions import Outcome, status_for
from envisolation.policy.plan import LivePolicy, plan_namespace
from envisolation.policy.render import RenderContext, decide
from envisolation.spec.model import InvalidSpec, IsolationRecord, NamespaceFacts
from tests.unit.strategies import spec as rich_spec

CTX = RenderContext()

hostile_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "dev", "Dev", "-x", "a" * 70, "prød", "0", "65536", "10.0.0.0/8",
                     "::/0", "Ingress", "Off", "null", "🙂", "a/b/c", "envisolation-default-deny"]),
)  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def damaged_specs(draw: st.DrawFn) -> Any:
    spec = copy.deepcopy(draw(rich_spec()))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(spec)
        path = draw(st.sampled_from(paths))
        junk = draw(json_values)
        if not path:
            spec = junk
            continue
        parent = spec
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = junk
    return spec


namespaces = st.lists(
    st.tuples(st.sampled_from(["dev", "test", "prod", "qa", "", "Dev", None]), st.booleans()),
    max_size=6,
).map(
    lambda xs: [
        {
            "kind": "Namespace",
            "metadata": {
                "name": f"n{i}",
                "labels": {"environment": s} if s is not None else {},
                **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if term else {}),
            },
        }
        for i, (s, term) in enumerate(xs)
    ]
)


def run(spec: Any, raw_namespaces: list[dict[str, Any]]) -> str:
    """Everything the operator does with a spec, as one comparable string."""
    body = {
        "kind": "EnvironmentIsolation",
        "metadata": {"name": "fuzz", "uid": "u", "generation": 1},
        "spec": spec,
    }
    try:
        iso = IsolationRecord.from_body(body).parse()
    except InvalidSpec as e:
        message = str(e)
        assert message.split(":", maxsplit=1)[0].startswith(("spec", "metadata")), message
        event("spec: invalid")  # --hypothesis-show-statistics shows the mix
        return f"invalid: {message}"
    event("spec: valid")
    facts = [NamespaceFacts.from_body(n) for n in raw_namespaces]
    outcomes = []
    rendered: list[dict[str, Any]] = []
    for f in facts:
        d = decide(f, [iso], CTX)
        plan = plan_namespace(d, [], {iso.name})
        outcomes.append(Outcome.of(d, True, None, plan.would_apply, plan.would_delete))
        rendered += [dict(p) for p in d.desired]
        for p in d.desired:  # what the operator writes must parse for analysis
            parse_policy(p)
        # ... and read back as it planned: with everything it wants live, nothing to do
        live = [LivePolicy.from_body(p) for p in d.desired]
        assert plan_namespace(d, live, {iso.name}).actions == ()
    status = status_for(iso, outcomes, None, "2026-01-01T00:00:00Z")
    reports = reports_from_objects([body, *raw_namespaces, *rendered], CTX)
    return json.dumps(
        {"status": status, "policies": rendered, "reports": [r.as_dict() for r in reports]},
        sort_keys=True,
        default=str,
    )


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(damaged_specs(), namespaces)
def test_damaged_specs_never_crash_and_are_deterministic(
    spec: Any, raw: list[dict[str, Any]]
) -> None:
    assert run(spec, raw) == run(copy.deepcopy(spec), copy.deepcopy(raw))


@FUZZ
@given(json_values, namespaces)
def test_arbitrary_json_never_crashes(spec: Any, raw: list[dict[str, Any]]) -> None:
    assert run(spec, raw) == run(copy.deepcopy(spec), copy.deepcopy(raw))


@FUZZ
@given(rich_spec(), namespaces)
def test_valid_specs_always_render(spec: dict[str, Any], raw: list[dict[str, Any]]) -> None:
    assert not run(spec, raw).startswith("invalid"), run(spec, raw)


@FUZZ
@given(json_values)
def test_any_policy_body_is_parsed_or_refused_with_invalidspec(spec: Any) -> None:
    body = {"metadata": {"namespace": "n", "name": "p"}, "spec": spec}
    try:
        parse_policy(body)
    except InvalidSpec as e:
        error = str(e)
    else:
        return
    assert error.startswith("NetworkPolicy n/p: spec"), error
