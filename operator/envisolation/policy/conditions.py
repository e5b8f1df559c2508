"""An EnvironmentIsolation's status, computed from the outcome of every namespace.

Deterministic: given the same outcomes and the previous status, the same status comes
out (lastTransitionTime only moves when a condition's status does), so an unchanged
world never causes a status write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from envisolation.policy.render import Decision, NamespaceState
from envisolation.spec import constants as c
from envisolation.spec.kinds import ConditionDict, ConflictDict, SegmentStatusDict, StatusDict
from envisolation.spec.model import Enforcement, EnvironmentIsolation


class Exposure(Protocol):
    """An undeclared cross-segment path, as analysis.exposure reports it (str() says it
    for a person); the policy layer only shows it, so it needs no more than this."""

    def as_status(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Outcome:
    """One namespace as the controller last left it.

    `decision` is kept without its rendered policies (they are re-rendered on demand);
    `policies` counts them and `fingerprint` tells whether they changed.
    """

    decision: Decision
    converged: bool  # the live policies are exactly the desired ones
    error: str | None = None
    would_apply: int = 0
    would_delete: int = 0
    policies: int = 0
    fingerprint: int = 0

    @classmethod
    def of(
        cls,
        decision: Decision,
        converged: bool,
        error: str | None = None,
        would_apply: int = 0,
        would_delete: int = 0,
        fingerprint: int | None = None,
    ) -> Outcome:
        """`fingerprint`: what the rendered policies depend on, if the caller knows it
        (the owning isolation's uid and generation); else a hash of the policies."""
        slim = replace(decision, desired=(), preview=())
        if fingerprint is None:
            fingerprint = hash(repr(decision.desired))
        return cls(
            slim, converged, error, would_apply, would_delete, len(decision.desired), fingerprint
        )


def _condition(
    ctype: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: str,
) -> ConditionDict:
    since = now
    for old in (previous or {}).get("conditions") or []:
        if old.get("type") == ctype and old.get("status") == status:
            since = str(old.get("lastTransitionTime") or now)
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def invalid_status(
    generation: int, message: str, previous: Mapping[str, Any] | None, now: str
) -> StatusDict:
    """The spec cannot be rendered: nothing was changed, and the user is told what to fix."""
    keep = {k: v for k, v in (previous or {}).items() if k in ("namespaces", "policies")}
    status: StatusDict = {
        "observedGeneration": generation,
        "conditions": [
            _condition("Ready", "False", "InvalidSpec", message, generation, previous, now),
            _condition(
                "Conflict", "Unknown", "InvalidSpec", "spec is invalid", generation, previous, now
            ),
            _condition(
                "Exposed",
                "Unknown",
                "NotChecked",
                "exposure analysis not run",
                generation,
                previous,
                now,
            ),
        ],
    }
    if "namespaces" in keep:
        status["namespaces"] = int(keep["namespaces"])
    if "policies" in keep:
        status["policies"] = int(keep["policies"])
    return status


def _exposed(exposures: Sequence[Exposure] | None) -> tuple[str, str, str]:
    if exposures is None:
        return ("Unknown", "NotChecked", "exposure analysis has not run yet")
    if not exposures:
        return ("False", "NoExposure", "every cross-segment path is declared in the spec")
    first = exposures[0]
    more = f" (and {len(exposures) - 1} more)" if len(exposures) > 1 else ""
    return ("True", "CrossSegmentExposure", f"{first}{more}")


def status_for(
    iso: EnvironmentIsolation,
    outcomes: Iterable[Outcome],
    previous: Mapping[str, Any] | None,
    now: str,
    pending: bool = False,
    exposures: Sequence[Exposure] | None = None,
    not_isolatable: Sequence[str] | None = None,
) -> StatusDict:
    gen = iso.generation
    mine = [o for o in outcomes if iso.name in o.decision.claimants]
    owned = [o for o in mine if o.decision.owner == iso.name]
    segments: list[SegmentStatusDict] = []
    for seg in iso.segments:
        here = [o for o in owned if o.decision.segment == seg.name]
        entry: SegmentStatusDict = {
            "name": seg.name,
            "enforcement": seg.enforcement.value,
            "namespaces": len(here),
            "ready": sum(o.converged and o.error is None for o in here),
        }
        if seg.enforcement is Enforcement.AUDIT:
            entry["wouldApply"] = sum(o.would_apply for o in here)
            entry["wouldDelete"] = sum(o.would_delete for o in here)
        segments.append(entry)

    conflicts: list[ConflictDict] = [
        {
            "namespace": o.decision.namespace,
            "isolations": list(o.decision.claimants),
            "owner": o.decision.owner or "",
        }
        for o in sorted(mine, key=lambda o: o.decision.namespace)
        if o.decision.state is NamespaceState.CONFLICT
    ]
    errors = sorted((o.decision.namespace, o.error) for o in owned if o.error)
    waiting = [o for o in owned if not o.converged and not o.error]
    policies = sum(o.policies for o in owned)

    if errors:
        ns, err = errors[0]
        more = f" (and {len(errors) - 1} more namespaces)" if len(errors) > 1 else ""
        ready = ("False", "ApplyFailed", f"namespace {ns}: {err}{more}")
    elif waiting or pending:
        ready = (
            "False",
            "Progressing",
            f"{len(owned) - len(waiting)} of {len(owned)} namespaces converged",
        )
    else:
        audit = sum(s.get("wouldApply", 0) + s.get("wouldDelete", 0) for s in segments)
        note = f"; Audit segments would change {audit} policies" if audit else ""
        ready = ("True", "Reconciled", f"{len(owned)} namespaces, {policies} policies{note}")
    if conflicts:
        first = conflicts[0]
        conflict = (
            "True",
            "NamespaceClaimedTwice",
            f"{len(conflicts)} namespaces claimed by more than one EnvironmentIsolation, e.g. "
            f"{first['namespace']} by {', '.join(first['isolations'])} (owner {first['owner']}); "
            "they keep only their default-deny",
        )
    else:
        conflict = ("False", "NoConflict", "no namespace is claimed twice")

    status: StatusDict = {
        "observedGeneration": gen,
        "conditions": [
            _condition("Ready", *ready, gen, previous, now),
            _condition("Conflict", *conflict, gen, previous, now),
            _condition("Exposed", *_exposed(exposures), gen, previous, now),
        ],
        "namespaces": len(owned),
        "policies": policies,
        "segments": segments,
        "segmentNames": ",".join(s.name for s in iso.segments),
        "conflicts": conflicts[: c.STATUS_LIST_LIMIT],
        "conflictCount": len(conflicts),
        "exposures": [e.as_status() for e in (exposures or [])[: c.STATUS_LIST_LIMIT]],
        "exposureCount": len(exposures or []),
    }
    if not_isolatable:  # hostNetwork pods in the isolation's namespaces
        status["notIsolatable"] = list(not_isolatable[: c.STATUS_LIST_LIMIT])
        status["notIsolatableCount"] = len(not_isolatable)
    return status
