"""The writer carries out a plan in phases and remembers its writes until the watch
shows them (runtime/writer.py against a recording PolicyApi; no cluster needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from envisolation.policy.plan import LivePolicy, live_after, plan_namespace
from envisolation.policy.render import RenderContext, decide
from envisolation.runtime.api import ApiError
from envisolation.runtime.writer import PlanWriter
from envisolation.spec import constants as c
from envisolation.spec.kinds import PolicyDict
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts

ISO = EnvironmentIsolation.from_body(
    {
        "metadata": {"name": "env", "uid": "u1", "generation": 1},
        "spec": {
            "segments": [{"name": "dev"}, {"name": "prod"}],
            "allow": [{"name": "web", "ingress": [{"from": [{"segment": "dev"}]}]}],
        },
    }
)


class Recorder:
    """A PolicyApi that records each call, in order, and can fail one policy's apply."""

    def __init__(self, fail: str = "") -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail
        self.rv = 100

    async def apply_policy(self, policy: PolicyDict) -> Mapping[str, Any]:
        name = policy["metadata"]["name"]
        await asyncio.sleep(0)  # let a phase's writes interleave, as real ones do
        if name == self.fail:
            raise ApiError(500, "injected")
        self.calls.append(("apply", name))
        self.rv += 1
        meta = {**policy["metadata"], "uid": f"uid-{name}", "resourceVersion": str(self.rv),
                "managedFields": [{"manager": c.FIELD_MANAGER}]}  # fmt: skip
        return {"metadata": meta, "spec": policy["spec"]}

    async def replace_policy(self, policy: PolicyDict, resource_version: str) -> Mapping[str, Any]:
        raise AssertionError("no other manager holds fields here: nothing to replace")

    async def delete_policy(self, namespace: str, name: str, uid: str, rv: str) -> None:
        self.calls.append(("delete", name))


def _plan(labels: dict[str, str], live: list[LivePolicy]) -> Any:
    facts = NamespaceFacts.from_body({"metadata": {"name": "a", "labels": labels}})
    return plan_namespace(decide(facts, [ISO], RenderContext()), live, {"env"})


async def test_a_new_namespace_gets_its_default_deny_only_after_every_allow() -> None:
    api = Recorder()
    result = await PlanWriter(api).carry_out("a", _plan({"environment": "dev"}, []))
    assert result.error is None
    names = [n for _, n in api.calls]
    assert names[-1] == c.POLICY_DEFAULT_DENY
    assert set(names[:-1]) == {"envisolation-allow-web", c.POLICY_DNS, c.POLICY_SAME_SEGMENT}
    assert len(result.done) == 4


async def test_a_failed_allow_stops_the_plan_before_the_default_deny() -> None:
    api = Recorder(fail="envisolation-allow-web")
    result = await PlanWriter(api).carry_out("a", _plan({"environment": "dev"}, []))
    assert isinstance(result.error, ApiError) and result.error.transient
    assert ("apply", c.POLICY_DEFAULT_DENY) not in api.calls
    assert len(result.done) == 2  # the other allows of the same phase went out


async def test_leaving_deletes_the_default_deny_last() -> None:
    live = live_after(_plan({"environment": "dev"}, []), [])
    api = Recorder()
    result = await PlanWriter(api).carry_out("a", _plan({}, live))
    assert result.error is None
    assert api.calls[-1] == ("delete", c.POLICY_DEFAULT_DENY)
    assert {v for v, _ in api.calls} == {"delete"}


async def test_its_own_writes_count_as_live_until_the_watch_shows_them() -> None:
    api = Recorder()
    writer = PlanWriter(api)
    await writer.carry_out("a", _plan({"environment": "dev"}, []))
    live = writer.live("a", {})  # the watch has delivered nothing yet
    assert [p.name for p in live] == sorted(n for _, n in api.calls)
    assert _plan({"environment": "dev"}, live).empty, "planning again writes nothing"
    # Once the watch shows an object at least as new, the view's own copy is used.
    seen = {p.name: p for p in live}
    assert writer.live("a", seen) == sorted(seen.values(), key=lambda p: p.name)
    writer.forget("a")
    assert writer.live("a", {}) == []
