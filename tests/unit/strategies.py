"""Generators of *valid* input across the accepted space (hypothesis), for the property
and fuzz tests: EnvironmentIsolations with several label keys and isolations, segments in
Enforce, Audit and Off with namespace selectors, allow rules with pod and namespace
selectors (every operator), segment peers, ipBlocks of both families with `except`,
numeric and named ports, port ranges (endPort) and SCTP; namespaces labelled with those
keys; and cluster states for reachability (pods with named ports, namespace labels,
policies with every peer kind, ipBlocks with except, SCTP, endPort).

Every spec drawn here must parse (`EnvironmentIsolation.from_body`): the tests that use
them say so, and report with `event()` what share of the draws exercised each feature
(`pytest --hypothesis-show-statistics`, tests/README.md).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

LABEL_KEYS = ("environment", "example.com/stage", "tier")
SEGMENTS = ("dev", "test", "prod", "qa")
POD_LABELS = {"app": ("web", "api", "db"), "role": ("fe", "be")}
NS_LABELS = {"team": ("red", "blue"), "zone": ("a", "b")}
PORT_NAMES = ("http", "metrics", "grpc-web")
BLOCKS = (
    ("10.0.0.0/8", ("10.1.0.0/16",)), ("192.0.2.0/24", ()), ("0.0.0.0/0", ("10.0.0.0/8", "172.16.0.0/12")),
    ("2001:db8::/32", ("2001:db8:1::/48",)), ("::/0", ("2001:db8::/32",)), ("fd00::/8", ()),
)  # fmt: skip


def selector(labels: dict[str, tuple[str, ...]]) -> st.SearchStrategy[dict[str, Any]]:
    """A label selector: empty, matchLabels, matchExpressions with every operator, or both."""

    @st.composite
    def draw_one(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if draw(st.booleans()):
            key = draw(st.sampled_from(sorted(labels)))
            out["matchLabels"] = {key: draw(st.sampled_from(labels[key]))}
        exprs = []
        for _ in range(draw(st.integers(0, 2))):
            key = draw(st.sampled_from(sorted(labels)))
            op = draw(st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")))
            expr: dict[str, Any] = {"key": key, "operator": op}
            if op in ("In", "NotIn"):
                values = draw(st.lists(st.sampled_from(labels[key]), min_size=1, unique=True))
                expr["values"] = sorted(values)
            exprs.append(expr)
        if exprs:
            out["matchExpressions"] = exprs
        return out

    return draw_one()


@st.composite
def port(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    proto = draw(st.sampled_from((None, "TCP", "UDP", "SCTP")))
    if proto is not None:
        out["protocol"] = proto
    kind = draw(st.sampled_from(("none", "number", "name", "range")))
    if kind == "number":
        out["port"] = draw(st.integers(1, 65535))
    elif kind == "name":
        out["port"] = draw(st.sampled_from(PORT_NAMES))
    elif kind == "range":
        lo = draw(st.integers(1, 65000))
        out["port"], out["endPort"] = lo, draw(st.integers(lo, 65535))
    return out


@st.composite
def ip_block(draw: st.DrawFn) -> dict[str, Any]:
    cidr, excepts = draw(st.sampled_from(BLOCKS))
    block: dict[str, Any] = {"cidr": cidr}
    chosen = draw(st.lists(st.sampled_from(excepts), unique=True)) if excepts else []
    if chosen:
        block["except"] = chosen
    return block


@st.composite
def spec_peer(draw: st.DrawFn, segments: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(("segment", "segment+pods", "pods", "namespaces", "both", "ip")))
    if kind == "ip":
        return {"ipBlock": draw(ip_block())}
    out: dict[str, Any] = {}
    if kind.startswith("segment"):
        out["segment"] = draw(st.sampled_from(segments))
    if kind in ("segment+pods", "pods", "both"):
        out["podSelector"] = draw(selector(POD_LABELS))
    if kind in ("namespaces", "both"):
        out["namespaceSelector"] = draw(selector(NS_LABELS))
    return out


@st.composite
def allow_rule(draw: st.DrawFn, i: int, segments: list[str]) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": f"r{i}"}
    if draw(st.booleans()):
        rule["segments"] = draw(st.lists(st.sampled_from(segments), min_size=1, unique=True))
    if draw(st.booleans()):
        rule["podSelector"] = draw(selector(POD_LABELS))
    directions = draw(st.sampled_from((("ingress",), ("egress",), ("ingress", "egress"))))
    for d in directions:
        key = "from" if d == "ingress" else "to"
        items = []
        for _ in range(draw(st.integers(1, 2))):
            item: dict[str, Any] = {}
            if draw(st.integers(0, 4)):  # mostly with peers; without: every peer
                item[key] = draw(st.lists(spec_peer(segments), min_size=1, max_size=2))
            if draw(st.booleans()):
                item["ports"] = draw(st.lists(port(), min_size=1, max_size=2))
            items.append(item)
        rule[d] = items
    return rule


@st.composite
def spec(draw: st.DrawFn, label: str = "environment") -> dict[str, Any]:
    """One valid EnvironmentIsolation spec."""
    names = draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4, unique=True))
    segments = []
    for name in names:
        seg: dict[str, Any] = {"name": name}
        if draw(st.integers(0, 2)) == 0:
            seg["enforcement"] = draw(st.sampled_from(("Enforce", "Audit", "Off")))
        if draw(st.integers(0, 3)) == 0:
            seg["namespaceSelector"] = draw(selector(NS_LABELS))
        segments.append(seg)
    out: dict[str, Any] = {"namespaceLabel": label, "segments": segments}
    if draw(st.booleans()):
        out["enforcement"] = draw(st.sampled_from(("Enforce", "Audit", "Off")))
    if draw(st.booleans()):
        out["isolate"] = draw(st.sampled_from((["Ingress"], ["Egress"], ["Ingress", "Egress"])))
    if draw(st.booleans()):
        out["sameSegment"] = draw(st.sampled_from(("Allow", "Deny")))
    if draw(st.booleans()):
        dns: dict[str, Any] = {"enabled": draw(st.booleans())}
        if draw(st.booleans()):
            dns["namespace"] = draw(st.sampled_from(("kube-system", "dns")))
        if draw(st.booleans()):
            dns["ports"] = [{"protocol": "UDP", "port": 5353}]
        out["dns"] = dns
    rules = [draw(allow_rule(i, names)) for i in range(draw(st.integers(0, 3)))]
    if rules:
        out["allow"] = rules
    if draw(st.booleans()):
        out["excludeNamespaces"] = draw(st.lists(st.sampled_from(("n0", "n1", "n2")), unique=True))
    if draw(st.booleans()):
        out["deletionPolicy"] = draw(st.sampled_from(("Orphan", "Delete")))
    return out


@st.composite
def isolations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One to three isolations, each named, each on a label key (two may share one)."""
    out = []
    for i in range(draw(st.integers(1, 3))):
        label = draw(st.sampled_from(LABEL_KEYS))
        out.append({"apiVersion": "envisolation.io/v1alpha1", "kind": "EnvironmentIsolation",
                    "metadata": {"name": f"iso-{i}", "uid": f"uid-{i}", "generation": 1},
                    "spec": draw(spec(label))})  # fmt: skip
    return out


@st.composite
def namespaces(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Namespaces labelled with any of the keys (a segment, a stray value, or nothing)."""
    out = []
    for i in range(draw(st.integers(1, 8))):
        labels = {}
        for key in LABEL_KEYS:
            value = draw(st.sampled_from((None, None, *SEGMENTS, "staging")))
            if value is not None:
                labels[key] = value
        for key, values in NS_LABELS.items():
            if draw(st.booleans()):
                labels[key] = draw(st.sampled_from(values))
        meta: dict[str, Any] = {"name": f"n{i}", "labels": labels}
        if draw(st.integers(0, 9)) == 0:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    return out


# -- cluster states for reachability -----------------------------------------------------------

CLUSTER_NAMESPACES = ("a", "b", "c")


@st.composite
def netpol_peer(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(("pods", "namespaces", "both", "ip")))
    if kind == "ip":
        return {"ipBlock": draw(ip_block())}
    out: dict[str, Any] = {}
    if kind in ("pods", "both"):
        out["podSelector"] = draw(selector(POD_LABELS))
    if kind in ("namespaces", "both"):
        out["namespaceSelector"] = draw(selector(NS_LABELS))
    return out


@st.composite
def network_policy(draw: st.DrawFn, i: int) -> dict[str, Any]:
    types = draw(st.sampled_from((None, ["Ingress"], ["Egress"], ["Ingress", "Egress"])))
    spec_: dict[str, Any] = {"podSelector": draw(selector(POD_LABELS))}
    if types is not None:
        spec_["policyTypes"] = types
    for t, key in (("Ingress", "from"), ("Egress", "to")):
        if types is None and t == "Egress" and draw(st.booleans()):
            continue
        if types is not None and t not in types:
            continue
        rules = []
        for _ in range(draw(st.integers(0, 2))):
            r: dict[str, Any] = {}
            if draw(st.integers(0, 3)):
                r[key] = draw(st.lists(netpol_peer(), min_size=1, max_size=2))
            if draw(st.booleans()):
                r["ports"] = draw(st.lists(port(), min_size=1, max_size=2))
            rules.append(r)
        spec_[t.lower()] = rules
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"p{i}", "namespace": draw(st.sampled_from(CLUSTER_NAMESPACES))},
            "spec": spec_}  # fmt: skip


@st.composite
def cluster(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Namespaces with labels, pods with labels and named ports, NetworkPolicies."""
    objs: list[dict[str, Any]] = []
    for ns in CLUSTER_NAMESPACES:
        labels = {k: draw(st.sampled_from(v)) for k, v in NS_LABELS.items() if draw(st.booleans())}
        objs.append(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}
        )
        for j in range(draw(st.integers(1, 2))):
            pod_labels = {
                k: draw(st.sampled_from(v)) for k, v in POD_LABELS.items() if draw(st.booleans())
            }
            ports = [{"name": name, "containerPort": 8000 + k, "protocol": draw(st.sampled_from(("TCP", "SCTP")))}
                     for k, name in enumerate(PORT_NAMES) if draw(st.booleans())]  # fmt: skip
            objs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"pod{j}", "namespace": ns, "labels": pod_labels},
                         "spec": {"containers": [{"name": "c", "image": "i", "ports": ports}]}})  # fmt: skip
    objs += [draw(network_policy(i)) for i in range(draw(st.integers(0, 4)))]
    return objs
