"""kube-router v2.1.0's NetworkPolicy semantics, as its source implements them, for one flow.

The differential tier asserts two things with this model: with both deviations switched
off it must give `envisolation reachability`'s verdict (the API's semantics) for every
probe, and with both on it must give the packets' verdict. So every place where the
packets and reachability disagree is explained by one of the deviations below, each of
which also has a minimal test of its own (test_differential.py), and anything else fails.

How kube-router v2.1.0 filters (pkg/controllers/netpol/pod.go, policy.go): each local pod
has a chain; traffic to the pod runs it (`-d podIP`), traffic from the pod runs it too
(`-s podIP`). A policy is jumped to from the chain of every pod it selects: with `-d
podIP` when its type is Ingress, `-s podIP` when Egress, and with no address match at
all when it is both. The policy's chain holds ACCEPT-marking rules for its ingress rules
(source in the peers, destination in the selected pods) and its egress rules (source in
the selected pods, destination in the peers). A pod chain that jumped to no policy of a
direction runs the default chain (accept); otherwise unmarked traffic is rejected.

Deviation "both-types": a policy with both policyTypes is evaluated on either direction,
so in the destination's check its *egress* rules can admit the flow (when the source is
also selected by it), and in the source's check its *ingress* rules can (when the
destination is). The API says only the destination's ingress rules count there.

Deviation "egress-named-port": an egress rule with named ports and no `to` resolves the
names against the pods of the policy's own namespace and allows the resulting port
numbers to every destination, addresses outside the cluster included. The API resolves a
named port against the destination pod, so a destination without a port of that name
(or an address outside the cluster) is not matched.

Deviation "unresolved-named-port": a rule with pod peers whose ports are all named, none
of which any pod it resolves against has (the policy's selected pods for ingress, the
rule's peer pods for egress), allows every port to those peers: kube-router is left with
no port to match and writes its "no ports: match on addresses only" rule. The API says
such a rule allows nothing.

Deviation "named-port-aliasing": kube-router builds the address list of a named port
from the pods it resolves against with one address map per pod shared by all of that
pod's ports, and appends a later pod's address to an earlier pod's map when both have the
same (name, protocol, number) port, named or not. The later pod then receives traffic on
every named port of the earlier one. Which pod comes first is the informer's map order,
so the model gives the least and the most kube-router may allow, and the packets must lie
between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envisolation.analysis.conns import ALL, Conns
from envisolation.analysis.netpol import External, Policy, PortRule, Rule, Workload
from envisolation.analysis.reachability import Cluster, peer_matches, port_conns, rule_admits_peer


@dataclass(frozen=True)
class Deviations:
    both_types: bool = True
    egress_named_port: bool = True
    unresolved_named_port: bool = True
    named_port_aliasing: bool = True  # what it *may* allow (it depends on an order)


SPEC = Deviations(False, False, False, False)
KUBE_ROUTER_LEAST = Deviations(True, True, True, False)
KUBE_ROUTER_MOST = Deviations(True, True, True, True)


def _named_any(cluster: Cluster, pol: Policy, ports: Sequence[PortRule]) -> Conns:
    """kube-router's egress named ports with no `to`: resolved in the policy's namespace."""
    out = Conns()
    for p in ports:
        if isinstance(p.port, str) and not p.port.isdigit():
            for w in cluster.workloads:
                if w.namespace != pol.namespace:
                    continue
                for cp in w.ports:
                    if cp.name == p.port and cp.protocol == p.protocol:
                        out = out | Conns.of(p.protocol, cp.port, cp.port)
    return out


def _unresolved(cluster: Cluster, pol: Policy, rule: Rule, egress: bool) -> bool:
    """Every port of the rule is named, and no pod it could resolve against has the name."""
    if not rule.ports or any(p.port is None or not isinstance(p.port, str) or p.port.isdigit()
                             for p in rule.ports):  # fmt: skip
        return False
    pods = _resolution_set(cluster, pol, rule, egress)
    return not any(cp.name == p.port and cp.protocol == p.protocol
                   for p in rule.ports for w in pods for cp in w.ports)  # fmt: skip


def _resolution_set(cluster: Cluster, pol: Policy, rule: Rule, egress: bool) -> list[Workload]:
    """The pods kube-router resolves a rule's named ports against."""
    if egress:
        return [w for w in cluster.workloads
                if any(peer_matches(p, pol.namespace, w, cluster.namespaces) for p in rule.peers or ())]  # fmt: skip
    return [w for w in cluster.workloads if pol.selects(w)]


def _aliased(pods: Sequence[Workload], name: str, protocol: str, dst: Workload) -> Conns:
    """Port numbers a named port may open on dst through kube-router's shared address lists.

    grabNamedPortFromPod keeps one address map per pod for all of its ports; when a later
    pod has a (name, protocol, number) port an earlier pod created the entry for, its
    address is appended to the earlier pod's map, so it joins *every* named port of that
    pod. Which pod is earlier is the informer's map order, so this is what may happen.
    """
    keys = {(cp.name, cp.protocol, cp.port) for cp in dst.ports}
    out = Conns()
    for x in pods:
        if x == dst or not keys & {(cp.name, cp.protocol, cp.port) for cp in x.ports}:
            continue
        for cp in x.ports:
            if cp.name == name and cp.protocol == protocol:
                out = out | Conns.of(protocol, cp.port, cp.port)
    return out


def _named(p: PortRule) -> bool:
    return isinstance(p.port, str) and not p.port.isdigit()


def _rule_conns(cluster: Cluster, pol: Policy, rule: Rule, src: Workload | External,
                dst: Workload | External, egress: bool, dev: Deviations) -> Conns:  # fmt: skip
    if egress and rule.peers is None and rule.ports is not None and dev.egress_named_port:
        # named ports resolved in the policy's namespace, the numbers open to everyone
        numeric = port_conns(tuple(p for p in rule.ports if not _named(p)), None)
        return numeric | _named_any(cluster, pol, rule.ports)
    conns = port_conns(rule.ports, dst if isinstance(dst, Workload) else None)
    peer = dst if egress else src
    if (dev.unresolved_named_port and rule.peers is not None and isinstance(peer, Workload)
            and _unresolved(cluster, pol, rule, egress)):  # fmt: skip
        return ALL  # the rule's pod peers get every port
    if dev.named_port_aliasing and isinstance(dst, Workload) and rule.ports:
        pods = _resolution_set(cluster, pol, rule, egress)
        if dst in pods:
            for p in rule.ports:
                if _named(p):
                    conns = conns | _aliased(pods, str(p.port), p.protocol, dst)
    return conns


def _chain_allows(cluster: Cluster, x: Workload, src: Workload | External, dst: Workload | External,
                  probe: Conns, dev: Deviations) -> bool:  # fmt: skip
    """The verdict of pod x's chain (x is the source or the destination of the flow)."""
    as_dst = x is dst
    pols = [p for p in cluster.policies if p.selects(x)]
    relevant = [p for p in pols if (p.ingress if as_dst else p.egress) is not None]
    if not relevant:
        return True

    def admits(pol: Policy, rules: Sequence[Rule] | None, egress: bool) -> bool:
        other = dst if egress else src
        return any(rule_admits_peer(cluster, pol, r, other)
                   and probe <= _rule_conns(cluster, pol, r, src, dst, egress, dev)
                   for r in rules or ())  # fmt: skip

    for pol in relevant:
        # the flow's own direction, as the API says
        if admits(pol, pol.ingress if as_dst else pol.egress, not as_dst):
            return True
        if not (pol.ingress is not None and pol.egress is not None and dev.both_types):
            continue
        # kube-router: the other direction's rules of a both-types policy count as well
        if (
            as_dst
            and isinstance(src, Workload)
            and pol.selects(src)
            and admits(pol, pol.egress, True)
        ):
            return True
        if (
            not as_dst
            and isinstance(dst, Workload)
            and pol.selects(dst)
            and admits(pol, pol.ingress, False)
        ):
            return True
    return False


def allows(cluster: Cluster, src: Workload | External, dst: Workload | External,
           protocol: str, port: int, dev: Deviations) -> bool:  # fmt: skip
    probe = Conns.of(protocol, port, port)
    if isinstance(dst, Workload) and not _chain_allows(cluster, dst, src, dst, probe, dev):
        return False
    return not (isinstance(src, Workload) and not _chain_allows(cluster, src, src, dst, probe, dev))
