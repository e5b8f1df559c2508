"""Cross-segment paths that the spec does not allow, at namespace level (pure).

NetworkPolicies are additive: a policy someone else writes can reopen what the operator
closed. Without pods, each namespace stands for all the pods it may hold, and every pod
selector is taken to match some pod (an over-approximation: a reported path may need a
pod that does not exist; an unreported one cannot exist). A path A -> B needs an
ingress grant in B and an egress grant in A; a namespace with no select-all policy for a
direction is open in that direction. The operator's own policies are what the spec
declares: an exposure is what all policies allow beyond what the managed ones allow.
Wide ipBlocks in managed namespaces are reported as possible exposures, because whether
an ipBlock matches pod addresses depends on the network plugin; `WidePrefixes` says how
wide, per address family.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import Any

from envisolation.analysis.conns import ALL, NONE, Conns
from envisolation.analysis.netpol import Peer, Policy, PortRule, Rule, address, parse_policy
from envisolation.spec.selectors import LabelSelector


@dataclass(frozen=True)
class WidePrefixes:
    """From which width on an ipBlock is reported as possibly covering pod addresses.

    A block is "wide" when it spans a whole prefix of this length or a shorter one (a
    wider network). The defaults follow how pod addresses are handed out:
    - IPv4: clusters take a /16 or wider for pods (kubeadm's and flannel's 10.244.0.0/16,
      Calico's 192.168.0.0/16, GKE /14) and give each node a /24, so a /16 may hold a
      whole cluster's pods;
    - IPv6: clusters take a /48 to /56 for pods (kind's fd00:10:244::/56; /48 on most
      clouds) and give each node a /64 (IPv6 subnets are /64 by convention, kubeadm's
      node mask default), so a /56 may hold a whole cluster's pods. A /64 holds one node's
      pods at most, as a /24 does for IPv4, and is not reported in either family.
    Both are settings (`envisolation run|verify --wide-ipv4-prefix/--wide-ipv6-prefix`)
    for clusters that allocate otherwise.
    """

    ipv4: int = 16
    ipv6: int = 56

    def __post_init__(self) -> None:
        if not 0 <= self.ipv4 <= 32:
            raise ValueError(f"the IPv4 wide prefix must be 0-32, got {self.ipv4}")
        if not 0 <= self.ipv6 <= 128:
            raise ValueError(f"the IPv6 wide prefix must be 0-128, got {self.ipv6}")

    def of(self, version: int) -> int:
        return self.ipv4 if version == 4 else self.ipv6


DEFAULT_WIDE = WidePrefixes()


@dataclass(frozen=True)
class Member:
    """A namespace the isolation owns: its name, labels and segment."""

    name: str
    labels: Mapping[str, str]
    segment: str


@dataclass(frozen=True)
class SeenPolicy:
    """Any NetworkPolicy, parsed for analysis, with its labels."""

    policy: Policy
    labels: tuple[tuple[str, str], ...]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SeenPolicy:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        shared = _parsed_spec(json.dumps(body.get("spec") or {}, sort_keys=True))
        policy = replace(
            shared,
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
        )
        return cls(policy, tuple(sorted((str(k), str(v)) for k, v in labels.items())))


@functools.lru_cache(maxsize=8192)
def _parsed_spec(text: str) -> Policy:
    """Equal specs parse to one shared object (namespace and name are filled in per use)."""
    return parse_policy({"metadata": {"namespace": "", "name": ""}, "spec": json.loads(text)})


@dataclass(frozen=True)
class Exposure:
    source_segment: str
    source: str  # a namespace, or "ipBlock 0.0.0.0/0"
    destination_segment: str
    destination: str
    conns: Conns
    policies: tuple[str, ...]  # namespace/name of the policies responsible

    @property
    def key(self) -> tuple[str, str, tuple[str, ...]]:
        return (self.source, self.destination, self.policies)

    def as_status(self) -> dict[str, str]:
        return {
            "sourceSegment": self.source_segment,
            "source": self.source,
            "destinationSegment": self.destination_segment,
            "destination": self.destination,
            "ports": str(self.conns),
            "policies": ",".join(self.policies),
        }

    def __str__(self) -> str:
        src = f"{self.source_segment}/{self.source}" if self.source_segment else self.source
        dst = (
            f"{self.destination_segment}/{self.destination}"
            if self.destination_segment
            else self.destination
        )
        return f"{src} -> {dst}: {self.conns} via {', '.join(self.policies)}"


def _ports(ports: Sequence[PortRule] | None) -> Conns:
    """Ports a rule may allow to some pod: a named port may be any port of its protocol."""
    if ports is None:
        return ALL
    out = NONE
    for p in ports:
        if p.port is None or not (isinstance(p.port, int) or str(p.port).isdigit()):
            out = out | Conns.of(p.protocol)
        else:
            lo = int(p.port)
            out = out | Conns.of(p.protocol, lo, int(p.end_port) if p.end_port else lo)
    return out


def _may_match(peer: Peer, policy_ns: str, other: Member) -> bool:
    if peer.blocks is not None:
        return False
    if peer.namespace_selector is not None:
        return peer.namespace_selector.matches(other.labels)
    return other.name == policy_ns


def _selects_all(sel: LabelSelector) -> bool:
    return not sel.match_labels and not sel.match_expressions


def _grant(
    policies: Iterable[Policy], direction: str, other: Member
) -> tuple[Conns, list[tuple[Policy, Conns]]]:
    """What `policies` (all in one namespace) may allow in `direction` to/from `other`."""
    isolated = False
    out = NONE
    who: list[tuple[Policy, Conns]] = []
    for pol in policies:
        rules: tuple[Rule, ...] | None = pol.ingress if direction == "ingress" else pol.egress
        if rules is None:
            continue
        isolated = isolated or _selects_all(pol.pod_selector)
        mine = NONE
        for r in rules:
            if r.peers is None or any(_may_match(p, pol.namespace, other) for p in r.peers):
                mine = mine | _ports(r.ports)
        if mine:
            who.append((pol, mine))
            out = out | mine
    return (out if isolated else ALL), who


def _managed(p: Policy, managed: AbstractSet[tuple[str, str]]) -> bool:
    return (p.namespace, p.name) in managed


def find(
    members: Sequence[Member],
    policies: Sequence[Policy],
    managed: AbstractSet[tuple[str, str]],
    wide_prefixes: WidePrefixes = DEFAULT_WIDE,
) -> list[Exposure]:
    """Every undeclared cross-segment path between members, and wide ipBlocks.

    `managed` holds (namespace, name) of the policies the operator owns (plan.owned);
    a policy that only carries the operator's label is analysed like any other.
    """
    by_ns: dict[str, list[Policy]] = {}
    for p in policies:
        by_ns.setdefault(p.namespace, []).append(p)
    member = {m.name: m for m in members}
    # Only a policy the operator did not write can add a path: candidates come from them.
    candidates: set[tuple[str, str]] = set()
    wide: list[Exposure] = []
    for p in policies:
        if p.namespace not in member or _managed(p, managed):
            continue
        here = member[p.namespace]
        for direction, rules in (("ingress", p.ingress), ("egress", p.egress)):
            for r in rules or ():
                peers = r.peers
                for m in members:
                    if m.segment == here.segment:
                        continue
                    if peers is None or any(_may_match(x, p.namespace, m) for x in peers):
                        pair = (
                            (m.name, here.name) if direction == "ingress" else (here.name, m.name)
                        )
                        candidates.add(pair)
                for x in peers or ():
                    for v, lo, hi in x.blocks or ():
                        first, last = address(v, lo), address(v, hi)
                        net = ipaddress.summarize_address_range(first, last)
                        widest = min(n.prefixlen for n in net)
                        if widest <= wide_prefixes.of(v):
                            block = f"ipBlock {first}-{last}"
                            src, dst = (
                                (block, here.name) if direction == "ingress" else (here.name, block)
                            )
                            seg_src = "" if direction == "ingress" else here.segment
                            seg_dst = here.segment if direction == "ingress" else ""
                            wide.append(
                                Exposure(
                                    seg_src,
                                    src,
                                    seg_dst,
                                    dst,
                                    _ports(r.ports),
                                    (f"{p.namespace}/{p.name}",),
                                )
                            )
    found: list[Exposure] = []
    for a_name, b_name in sorted(candidates):
        a, b = member[a_name], member[b_name]
        pols_a, pols_b = by_ns.get(a.name, []), by_ns.get(b.name, [])
        out_all, who_out = _grant(pols_a, "egress", b)
        in_all, who_in = _grant(pols_b, "ingress", a)
        total = out_all & in_all
        if not total:
            continue
        out_managed, _ = _grant([p for p in pols_a if _managed(p, managed)], "egress", b)
        in_managed, _ = _grant([p for p in pols_b if _managed(p, managed)], "ingress", a)
        extra = total - (out_managed & in_managed)
        if not extra:
            continue
        responsible = sorted(
            f"{p.namespace}/{p.name}"
            for p, conns in [*who_out, *who_in]
            if not _managed(p, managed) and conns & extra
        )
        found.append(Exposure(a.segment, a.name, b.segment, b.name, extra, tuple(responsible)))
    unique = {(e.source, e.destination, e.policies): e for e in wide}
    return found + sorted(unique.values(), key=lambda e: (e.destination, e.source))
