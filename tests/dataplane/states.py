"""Generated cluster states for the differential tier: namespaces, pods, NetworkPolicies.

Deterministic from a seed (`random.Random(seed)`), so a failing state is reproduced by its
number. The space: namespaces with or without labels; pods with labels and named container
ports that differ from pod to pod (a named port resolves per destination); policies with
empty, matchLabels and matchExpressions selectors (In, NotIn, Exists, DoesNotExist),
Ingress, Egress, both or inferred policyTypes, rules with no peers, pod, namespace and
combined selectors, ipBlocks with `except` over the lab's external addresses (never over
pod addresses: whether an ipBlock matches a pod's address is left to the implementation
by the API, and our analysis says it does not), and ports numeric, named, ranges
(endPort), TCP and UDP, or none. With `ipv6=True` (the cyclonus tier; the dataplane lab is
IPv4 only) ipBlocks are drawn from IPv6 blocks too, `except` inside them and blocks of
both families in one rule, probed at EXTERNALS6.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from tests.dataplane.lab import Port

PROBED = (("TCP", 80), ("TCP", 81), ("TCP", 5001), ("UDP", 53), ("UDP", 5353))
EXTERNALS = ("198.19.0.1", "198.19.0.2", "198.19.0.5", "198.19.1.1")
NS_LABELS = {"team": ("red", "blue"), "tier": ("web", "data"), "stage": ("a", "b")}
POD_LABELS = {"app": ("web", "db", "cache"), "role": ("fe", "be"), "canary": ("yes",)}
# what ipBlocks draw from: blocks around the external addresses, with holes
BLOCKS = (
    ("198.19.0.0/16", ()), ("198.19.0.0/24", ("198.19.0.2/32",)), ("198.19.0.0/30", ()),
    ("198.19.0.4/30", ()), ("198.19.1.0/24", ()), ("198.19.0.0/16", ("198.19.0.0/24",)),
    ("198.19.0.1/32", ()),
)  # fmt: skip
# IPv6 outside addresses and blocks: data for the analyses only, never configured anywhere
EXTERNALS6 = ("2001:db8::1", "2001:db8::2", "2001:db8::5", "2001:db8:0:1::1", "2001:db9::1")
BLOCKS6 = (
    ("2001:db8::/32", ()), ("2001:db8::/64", ("2001:db8::2/128",)), ("2001:db8::/126", ()),
    ("2001:db8::4/126", ()), ("2001:db8:0:1::/64", ()), ("2001:db8::/32", ("2001:db8::/64",)),
    ("2001:db8::1/128", ()), ("::/0", ("2001:db8::/32",)),
)  # fmt: skip


def pod_ports(rng: random.Random) -> tuple[Port, ...]:
    """Every probed port is served; the names vary, so a named rule means different ports."""
    web = rng.choice(("http", "web", ""))
    alt = rng.choice(("http", "alt", "")) if web != "http" else rng.choice(("alt", ""))
    return (Port("TCP", 80, web), Port("TCP", 81, alt), Port("TCP", 5001, rng.choice(("admin", ""))),
            Port("UDP", 53, rng.choice(("dns", ""))), Port("UDP", 5353, rng.choice(("mdns", "dns-alt", ""))))  # fmt: skip


def selector(rng: random.Random, labels: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    kind = rng.choice(("empty", "labels", "expr", "both"))
    out: dict[str, Any] = {}
    key = rng.choice(sorted(labels))
    if kind in ("labels", "both"):
        out["matchLabels"] = {key: rng.choice(labels[key])}
    if kind in ("expr", "both"):
        op = rng.choice(("In", "NotIn", "Exists", "DoesNotExist"))
        k2 = rng.choice(sorted(labels))
        expr: dict[str, Any] = {"key": k2, "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = sorted(set(rng.sample(labels[k2], rng.randint(1, len(labels[k2])))))
        out["matchExpressions"] = [expr]
    return out


def peer(rng: random.Random, ipv6: bool = False) -> dict[str, Any]:
    kind = rng.choice(("pod", "ns", "both", "ip", "ip"))
    if kind == "ip":
        cidr, excepts = rng.choice(BLOCKS + BLOCKS6 if ipv6 else BLOCKS)
        return {"ipBlock": {"cidr": cidr, **({"except": list(excepts)} if excepts else {})}}
    out: dict[str, Any] = {}
    if kind in ("pod", "both"):
        out["podSelector"] = selector(rng, POD_LABELS)
    if kind in ("ns", "both"):
        out["namespaceSelector"] = selector(rng, NS_LABELS)
    return out


def ports(rng: random.Random) -> list[dict[str, Any]] | None:
    kind = rng.choice(("none", "numeric", "named", "range", "udp", "mixed"))
    if kind == "none":
        return None
    if kind == "numeric":
        return [{"protocol": "TCP", "port": rng.choice((80, 81, 5001))}]
    if kind == "named":
        return [{"protocol": "TCP", "port": rng.choice(("http", "alt", "web", "admin"))}]
    if kind == "range":
        return [
            {
                "protocol": "TCP",
                "port": rng.choice((79, 80, 81)),
                "endPort": rng.choice((81, 5001, 6000)),
            }
        ]
    if kind == "udp":
        return [{"protocol": "UDP", "port": rng.choice((53, "dns", "mdns", 5353))}]
    return [{"protocol": "TCP", "port": 80}, {"protocol": "UDP", "port": rng.choice((53, "dns"))},
            {"port": rng.choice((81, "alt"))}]  # fmt: skip


def rules(rng: random.Random, key: str, ipv6: bool = False) -> list[dict[str, Any]]:
    out = []
    for _ in range(rng.choice((0, 1, 1, 2))):
        rule: dict[str, Any] = {}
        if rng.random() < 0.8:
            rule[key] = [peer(rng, ipv6) for _ in range(rng.randint(1, 2))]
        p = ports(rng)
        if p is not None:
            rule["ports"] = p
        out.append(rule)
    return out


def policy(rng: random.Random, ns: str, name: str, ipv6: bool = False) -> dict[str, Any]:
    types = rng.choice((["Ingress"], ["Egress"], ["Ingress", "Egress"], None))
    spec: dict[str, Any] = {"podSelector": selector(rng, POD_LABELS)}
    if types is not None:
        spec["policyTypes"] = types
    if types is None or "Ingress" in types:
        spec["ingress"] = rules(rng, "from", ipv6)
    if types is None or "Egress" in types:
        eg = rules(rng, "to", ipv6)
        if eg or types is not None:
            spec["egress"] = eg
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}  # fmt: skip


@dataclass
class State:
    seed: int
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    pods: list[tuple[str, str, dict[str, str], tuple[Port, ...]]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    ipv6: bool = False


def generate(seed: int, ipv6: bool = False) -> State:
    rng = random.Random(seed)
    st = State(seed, ipv6=ipv6)
    for tag in ("a", "b", "c"):
        ns = f"s{seed}-{tag}"
        st.namespaces[ns] = {k: rng.choice(v) for k, v in NS_LABELS.items() if rng.random() < 0.6}
        for i in range(rng.randint(1, 3)):
            labels = {k: rng.choice(v) for k, v in POD_LABELS.items() if rng.random() < 0.7}
            st.pods.append((ns, f"p{i}", labels, pod_ports(rng)))
        for j in range(rng.choice((0, 1, 1, 2, 3))):
            st.policies.append(policy(rng, ns, f"np{j}", ipv6))
    return st
