"""Spec + namespace facts -> the NetworkPolicies that namespace must hold.

Pure and deterministic: policies are named by role and returned sorted by name, so
golden files, `envisolation render` and server-side apply are stable byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from envisolation.spec import constants as c
from envisolation.spec.kinds import (
    EgressRuleDict,
    IngressRuleDict,
    IPBlockWithExcept,
    PeerDict,
    PolicyDict,
    PolicySpecDict,
    PortDict,
    SelectorDict,
)
from envisolation.spec.model import (
    AllowRule,
    Enforcement,
    EnvironmentIsolation,
    NamespaceFacts,
    Peer,
    Port,
    Segment,
    TrafficRule,
)
from envisolation.spec.selectors import LabelSelector, Requirement


@dataclass(frozen=True)
class RenderContext:
    operator_namespace: str = c.DEFAULT_OPERATOR_NAMESPACE
    as_enforce: bool = False  # preview every segment as if it were Enforce


class NamespaceState(StrEnum):
    UNMANAGED = "Unmanaged"
    ISOLATED = "Isolated"
    AUDIT = "Audit"
    OFF = "Off"
    CONFLICT = "Conflict"
    TERMINATING = "Terminating"
    EXCLUDED = "Excluded"  # labelled with a segment, but excluded


@dataclass(frozen=True)
class Claim:
    isolation: EnvironmentIsolation
    segment: Segment


@dataclass(frozen=True)
class Decision:
    """What one namespace needs, given every EnvironmentIsolation."""

    namespace: str
    state: NamespaceState
    owner: str | None = None
    segment: str | None = None
    claimants: tuple[str, ...] = ()
    desired: tuple[PolicyDict, ...] = ()  # what must exist; everything else managed goes
    preview: tuple[PolicyDict, ...] = ()  # Audit: what Enforce would keep
    hands_off: bool = False  # write nothing at all (Audit, Terminating)


def excluded(ns: str, iso: EnvironmentIsolation, ctx: RenderContext) -> bool:
    return ns in c.ALWAYS_EXCLUDED or ns == ctx.operator_namespace or ns in iso.exclude_namespaces


def claims_for(
    ns: NamespaceFacts, isolations: Iterable[EnvironmentIsolation], ctx: RenderContext
) -> list[Claim]:
    """The isolations that claim `ns`, oldest first (the first one owns it)."""
    labels = ns.label_map
    out = []
    for iso in sorted(isolations, key=lambda i: i.age_key):
        if iso.deleting or excluded(ns.name, iso, ctx):
            continue
        value = labels.get(iso.namespace_label)
        seg = iso.segment(value) if value is not None else None
        if seg is None:
            continue
        if seg.namespace_selector is not None and not seg.namespace_selector.matches(labels):
            continue
        out.append(Claim(iso, seg))
    return out


def decide(
    ns: NamespaceFacts, isolations: Sequence[EnvironmentIsolation], ctx: RenderContext
) -> Decision:
    if ns.terminating:
        return Decision(ns.name, NamespaceState.TERMINATING, hands_off=True)
    claims = claims_for(ns, isolations, ctx)
    if not claims:
        labels = ns.label_map
        for iso in sorted(isolations, key=lambda i: i.age_key):
            value = labels.get(iso.namespace_label)
            if value is not None and iso.segment(value) and excluded(ns.name, iso, ctx):
                return Decision(ns.name, NamespaceState.EXCLUDED, None, value, (iso.name,))
        return Decision(ns.name, NamespaceState.UNMANAGED)
    owner = claims[0]
    iso, seg = owner.isolation, owner.segment
    names = tuple(cl.isolation.name for cl in claims)
    conflict = len(claims) > 1
    policies = (
        (default_deny(iso, seg, ns.name),) if conflict else render_namespace(iso, seg, ns.name, ctx)
    )
    mode = Enforcement.ENFORCE if ctx.as_enforce else seg.enforcement
    base = Decision(ns.name, NamespaceState.CONFLICT, iso.name, seg.name, names)
    if mode is Enforcement.AUDIT:
        state = NamespaceState.CONFLICT if conflict else NamespaceState.AUDIT
        return _with(base, state=state, preview=policies, hands_off=True)
    if mode is Enforcement.OFF:
        return _with(base, state=NamespaceState.CONFLICT if conflict else NamespaceState.OFF)
    state = NamespaceState.CONFLICT if conflict else NamespaceState.ISOLATED
    return _with(base, state=state, desired=policies)


def _with(
    d: Decision,
    state: NamespaceState,
    desired: tuple[PolicyDict, ...] = (),
    preview: tuple[PolicyDict, ...] = (),
    hands_off: bool = False,
) -> Decision:
    return Decision(
        d.namespace, state, d.owner, d.segment, d.claimants, desired, preview, hands_off
    )


# -- the policies ---------------------------------------------------------------------------


def render_namespace(
    iso: EnvironmentIsolation, seg: Segment, ns: str, ctx: RenderContext
) -> tuple[PolicyDict, ...]:
    out = [default_deny(iso, seg, ns)]
    if iso.same_segment:
        out.append(_same_segment(iso, seg, ns, ctx))
    if iso.dns.enabled and "Egress" in iso.isolate:
        out.append(_dns(iso, seg, ns))
    out.extend(_allow(iso, seg, ns, rule, ctx) for rule in iso.allow if _applies(rule, seg))
    return tuple(sorted(out, key=lambda p: p["metadata"]["name"]))


def _applies(rule: AllowRule, seg: Segment) -> bool:
    return not rule.segments or seg.name in rule.segments


def _policy(
    iso: EnvironmentIsolation, seg: Segment, ns: str, name: str, spec: PolicySpecDict
) -> PolicyDict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                c.LABEL_MANAGED_BY: c.MANAGED_BY,
                c.LABEL_ISOLATION: iso.name,
                c.LABEL_SEGMENT: seg.name,
            },
        },
        "spec": spec,
    }


def default_deny(iso: EnvironmentIsolation, seg: Segment, ns: str) -> PolicyDict:
    spec: PolicySpecDict = {"podSelector": {}, "policyTypes": list(iso.isolate)}
    return _policy(iso, seg, ns, c.POLICY_DEFAULT_DENY, spec)


def segment_selector(iso: EnvironmentIsolation, seg: Segment, ctx: RenderContext) -> SelectorDict:
    """The namespaces of `seg`: its label value and selector, minus every excluded name."""
    sel = LabelSelector(((iso.namespace_label, seg.name),))
    if seg.namespace_selector is not None:
        sel = sel.merged(seg.namespace_selector)
    never = sorted({*c.ALWAYS_EXCLUDED, ctx.operator_namespace, *iso.exclude_namespaces})
    sel = sel.merged(
        LabelSelector(
            match_expressions=(Requirement(c.NAMESPACE_NAME_LABEL, "NotIn", tuple(never)),)
        )
    )
    return sel.to_dict()


def _same_segment(
    iso: EnvironmentIsolation, seg: Segment, ns: str, ctx: RenderContext
) -> PolicyDict:
    peer: PeerDict = {"namespaceSelector": segment_selector(iso, seg, ctx)}
    spec: PolicySpecDict = {"podSelector": {}, "policyTypes": list(iso.isolate)}
    if "Ingress" in iso.isolate:
        spec["ingress"] = [{"from": [peer]}]
    if "Egress" in iso.isolate:
        spec["egress"] = [{"to": [peer]}]
    return _policy(iso, seg, ns, c.POLICY_SAME_SEGMENT, spec)


def _dns(iso: EnvironmentIsolation, seg: Segment, ns: str) -> PolicyDict:
    peer: PeerDict = {
        "namespaceSelector": {"matchLabels": {c.NAMESPACE_NAME_LABEL: iso.dns.namespace}},
        "podSelector": iso.dns.pod_selector.to_dict(),
    }
    spec: PolicySpecDict = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{"to": [peer], "ports": [_port(p) for p in iso.dns.ports]}],
    }
    return _policy(iso, seg, ns, c.POLICY_DNS, spec)


def _allow(
    iso: EnvironmentIsolation, seg: Segment, ns: str, rule: AllowRule, ctx: RenderContext
) -> PolicyDict:
    types: list[str] = []
    spec: PolicySpecDict = {"podSelector": rule.pod_selector.to_dict(), "policyTypes": types}
    if rule.ingress is not None:
        types.append("Ingress")
        spec["ingress"] = [_ingress(r, iso, ctx) for r in rule.ingress]
    if rule.egress is not None:
        types.append("Egress")
        spec["egress"] = [_egress(r, iso, ctx) for r in rule.egress]
    return _policy(iso, seg, ns, rule.policy_name, spec)


def _ingress(r: TrafficRule, iso: EnvironmentIsolation, ctx: RenderContext) -> IngressRuleDict:
    return cast(IngressRuleDict, _traffic(r, iso, ctx, "from"))


def _egress(r: TrafficRule, iso: EnvironmentIsolation, ctx: RenderContext) -> EgressRuleDict:
    return cast(EgressRuleDict, _traffic(r, iso, ctx, "to"))


def _traffic(
    r: TrafficRule, iso: EnvironmentIsolation, ctx: RenderContext, peers_key: str
) -> dict[str, list[PeerDict] | list[PortDict]]:
    """One ingress ("from") or egress ("to") rule; an absent list stays absent."""
    out: dict[str, list[PeerDict] | list[PortDict]] = {}
    if r.peers is not None:
        out[peers_key] = [_peer(p, iso, ctx) for p in r.peers]
    if r.ports is not None:
        out["ports"] = [_port(p) for p in r.ports]
    return out


def _peer(p: Peer, iso: EnvironmentIsolation, ctx: RenderContext) -> PeerDict:
    out: PeerDict = {}
    if p.segment is not None:
        seg = iso.segment(p.segment)
        assert seg is not None  # model.from_body checked every segment peer
        out["namespaceSelector"] = segment_selector(iso, seg, ctx)
    if p.namespace_selector is not None:
        out["namespaceSelector"] = p.namespace_selector.to_dict()
    if p.pod_selector is not None:
        out["podSelector"] = p.pod_selector.to_dict()
    if p.ip_block is not None:
        block: IPBlockWithExcept = {"cidr": p.ip_block.cidr}
        if p.ip_block.except_:
            block["except"] = list(p.ip_block.except_)
        out["ipBlock"] = block
    return out


def _port(p: Port) -> PortDict:
    out: PortDict = {"protocol": p.protocol}
    if p.port is not None:
        out["port"] = p.port
    if p.end_port is not None:
        out["endPort"] = p.end_port
    return out
