"""Carries out a namespace's plan: phase by phase, each phase's writes together.

A phase starts only when the one before it has fully succeeded (allows before the
default-deny, stale allows deleted last: plan.phases), so a namespace never passes
through a moment with no isolation. The writer also remembers its own writes until the
watch has shown them, so a pass that runs before the watch caught up plans against what
is really there and does not write twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from envisolation.policy.plan import (
    Action,
    LivePolicy,
    NamespacePlan,
    phases,
    sole_manager,
    up_to_date,
)
from envisolation.runtime.api import ApiError, PolicyApi
from envisolation.runtime.metrics import POLICIES_WRITTEN

OVERLAY_SECONDS = 30.0  # a write the watch has not shown after this long is forgotten


@dataclass
class _Written:
    """A write of ours that the watch may not have delivered yet."""

    rv: int
    policy: LivePolicy | None  # None: we deleted the object with this uid
    uid: str
    at: float


@dataclass
class Result:
    """What a plan's execution did: the actions done, and the error that stopped it."""

    done: list[str] = field(default_factory=list)
    error: ApiError | None = None


def _rv(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return -1


class PlanWriter:
    def __init__(self, api: PolicyApi) -> None:
        self._api = api
        self._written: dict[str, dict[str, _Written]] = {}

    def live(self, ns: str, seen: Mapping[str, LivePolicy]) -> list[LivePolicy]:
        """The view's policies of `ns`, corrected by our writes it has not shown yet."""
        live = dict(seen)
        pending = self._written.get(ns, {})
        for name, w in list(pending.items()):
            cur = live.get(name)
            stale = time.monotonic() - w.at > OVERLAY_SECONDS
            if w.policy is None:
                if cur is not None and cur.uid == w.uid and not stale:
                    del live[name]
                else:
                    del pending[name]
            elif (cur is not None and _rv(cur.resource_version) >= w.rv) or stale:
                del pending[name]
            else:
                live[name] = w.policy
        if not pending:
            self._written.pop(ns, None)
        return sorted(live.values(), key=lambda p: p.name)

    def forget(self, ns: str) -> None:
        """The namespace is gone."""
        self._written.pop(ns, None)

    async def carry_out(self, ns: str, plan: NamespacePlan) -> Result:
        result = Result()
        for phase in phases(plan.actions):
            # Within a phase the order does not matter, so its writes go out together.
            outcomes = await asyncio.gather(
                *(self._execute(ns, a) for a in phase), return_exceptions=True
            )
            result.done.extend(str(a) for a, r in zip(phase, outcomes, strict=True) if r is None)
            failed = [r for r in outcomes if isinstance(r, BaseException)]
            if failed:
                if isinstance(failed[0], ApiError):
                    result.error = failed[0]
                    return result
                raise failed[0]
        return result

    async def _execute(self, ns: str, action: Action) -> None:
        bucket = self._written.setdefault(ns, {})
        if action.policy is not None:  # an apply
            body = await self._api.apply_policy(action.policy)
            live = LivePolicy.from_body(body)
            # With our field manager the only one, the object is exactly what we applied.
            meta = body.get("metadata") or {}
            if not sole_manager(meta) and not up_to_date(action.policy, live):
                # Another manager holds fields that apply leaves alone (an ingress rule
                # added to our default-deny by hand, a policy squatting our name): only a
                # replace of the whole object removes them.
                body = await self._api.replace_policy(action.policy, live.resource_version)
                live = LivePolicy.from_body(body)
            bucket[action.name] = _Written(
                _rv(live.resource_version), live, live.uid, time.monotonic()
            )
            POLICIES_WRITTEN.labels("create" if action.created else "update").inc()
        else:
            await self._api.delete_policy(ns, action.name, action.uid, action.resource_version)
            bucket[action.name] = _Written(0, None, action.uid, time.monotonic())
            POLICIES_WRITTEN.labels("delete").inc()
