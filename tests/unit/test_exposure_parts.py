"""The parts of exposure analysis that the runtime uses directly: a seen policy, an
exposure as status and as text, the wide-prefix settings, and ports a rule may allow."""

from __future__ import annotations

import pytest

from envisolation.analysis.conns import ALL, Conns
from envisolation.analysis.exposure import (
    Exposure,
    Member,
    SeenPolicy,
    WidePrefixes,
    find,
)
from envisolation.analysis.netpol import parse_policy
from envisolation.spec.selectors import LabelSelector

SPEC = {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}


def test_seen_policy_keeps_namespace_name_and_sorted_labels() -> None:
    body = {
        "metadata": {"namespace": "shop", "name": "open", "labels": {"b": "2", "a": 1}},
        "spec": SPEC,
    }
    seen = SeenPolicy.from_body(body)
    assert seen.labels == (("a", "1"), ("b", "2"))
    assert (seen.policy.namespace, seen.policy.name) == ("shop", "open")
    parsed = parse_policy(body)
    assert (seen.policy.pod_selector, seen.policy.ingress, seen.policy.egress) == (
        parsed.pod_selector,
        parsed.ingress,
        parsed.egress,
    )


def test_seen_policy_defaults_and_shared_parse() -> None:
    bare = SeenPolicy.from_body({"spec": SPEC})
    assert (bare.policy.namespace, bare.policy.name, bare.labels) == ("default", "", ())
    no_spec = SeenPolicy.from_body({"metadata": {"name": "x", "namespace": "n"}})
    assert no_spec.policy.ingress == () and no_spec.policy.egress is None  # isolates ingress
    assert no_spec.policy.pod_selector == LabelSelector((), ())
    a = SeenPolicy.from_body({"metadata": {"namespace": "a", "name": "p"}, "spec": SPEC})
    b = SeenPolicy.from_body(
        {"metadata": {"namespace": "b", "name": "q"}, "spec": dict(reversed(SPEC.items()))}
    )
    assert a.policy.ingress is b.policy.ingress  # equal specs (in any key order) are parsed once
    assert (a.policy.namespace, b.policy.namespace) == ("a", "b")


EXPOSURE = Exposure("dev", "app-dev", "prod", "db", Conns.of("TCP", 5432), ("db/x", "db/y"))


def test_exposure_as_status_and_text() -> None:
    assert EXPOSURE.as_status() == {
        "sourceSegment": "dev",
        "source": "app-dev",
        "destinationSegment": "prod",
        "destination": "db",
        "ports": "TCP 5432",
        "policies": "db/x,db/y",
    }
    assert str(EXPOSURE) == "dev/app-dev -> prod/db: TCP 5432 via db/x, db/y"
    wide_in = Exposure("", "ipBlock 0.0.0.0-255.255.255.255", "prod", "db", ALL, ("db/x",))
    assert str(wide_in) == "ipBlock 0.0.0.0-255.255.255.255 -> prod/db: All Connections via db/x"
    wide_out = Exposure("dev", "app", "", "ipBlock 10.0.0.0-10.255.255.255", ALL, ("app/x",))
    assert str(wide_out) == "dev/app -> ipBlock 10.0.0.0-10.255.255.255: All Connections via app/x"
    assert EXPOSURE.key == ("app-dev", "db", ("db/x", "db/y"))


@pytest.mark.parametrize(("v4", "v6"), [(0, 0), (32, 128), (16, 56)])
def test_wide_prefixes_accept_their_range(v4: int, v6: int) -> None:
    w = WidePrefixes(v4, v6)
    assert (w.of(4), w.of(6)) == (v4, v6)


@pytest.mark.parametrize(
    ("v4", "v6", "message"),
    [
        (-1, 56, "the IPv4 wide prefix must be 0-32, got -1"),
        (33, 56, "the IPv4 wide prefix must be 0-32, got 33"),
        (16, -1, "the IPv6 wide prefix must be 0-128, got -1"),
        (16, 129, "the IPv6 wide prefix must be 0-128, got 129"),
    ],
)
def test_wide_prefixes_refuse_out_of_range(v4: int, v6: int, message: str) -> None:
    with pytest.raises(ValueError, match="wide prefix") as e:
        WidePrefixes(v4, v6)
    assert str(e.value) == message


def members() -> list[Member]:
    return [
        Member("app", {"environment": "dev"}, "dev"),
        Member("db", {"environment": "prod"}, "prod"),
    ]


def tenant(ports: list[dict[str, object]] | None) -> object:
    rule: dict[str, object] = {"from": [{"namespaceSelector": {}}]}
    if ports is not None:
        rule["ports"] = ports
    return parse_policy(
        {
            "metadata": {"namespace": "db", "name": "tenant"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [rule]},
        }
    )


@pytest.mark.parametrize(
    ("ports", "shown"),
    [
        (None, "All Connections"),
        ([{"port": 80}], "TCP 80"),
        ([{"port": "8080"}], "TCP 8080"),
        ([{"port": "http"}], "TCP 1-65535"),
        ([{"protocol": "UDP"}], "UDP 1-65535"),
        ([{"protocol": "SCTP", "port": 9000, "endPort": 9005}], "SCTP 9000-9005"),
        (
            [{"port": 53, "protocol": "UDP"}, {"port": "dns", "protocol": "TCP"}],
            "TCP 1-65535,UDP 53",
        ),
    ],
)
def test_a_rule_allows_its_ports_and_a_named_port_any_of_its_protocol(
    ports: list[dict[str, object]] | None, shown: str
) -> None:
    deny = parse_policy(
        {"metadata": {"namespace": "db", "name": "deny"}, "spec": {"podSelector": {}}}
    )
    (e,) = find(members(), [deny, tenant(ports)], {("db", "deny")})  # type: ignore[list-item]
    assert (e.source, e.destination, e.policies, str(e.conns)) == (
        "app",
        "db",
        ("db/tenant",),
        shown,
    )


def policy(ns: str, name: str, **spec: object) -> object:
    return parse_policy({"metadata": {"namespace": ns, "name": name}, "spec": spec})


def test_a_pod_selector_peer_is_the_policys_own_namespace_only() -> None:
    deny = policy("db", "deny", podSelector={})
    own = policy("db", "tenant", podSelector={}, ingress=[{"from": [{"podSelector": {}}]}])
    found = find(members(), [deny, own], {("db", "deny")})  # type: ignore[list-item]
    assert found == []


def test_a_policy_selecting_some_pods_leaves_the_others_open() -> None:
    """app opens its egress to everything; db's only ingress policy selects its db pods,
    so db's other pods stay open to everything, not only to the policy's port."""
    out_deny = policy("app", "deny", podSelector={}, policyTypes=["Egress"])
    out_all = policy("app", "out", podSelector={}, policyTypes=["Egress"],
                     egress=[{"to": [{"namespaceSelector": {}}]}])  # fmt: skip
    some = policy("db", "some", podSelector={"matchLabels": {"app": "db"}},
                  ingress=[{"from": [{"namespaceSelector": {}}], "ports": [{"port": 5432}]}])  # fmt: skip
    (e,) = find(members(), [out_deny, out_all, some], {("app", "deny")})  # type: ignore[list-item]
    assert (e.source, e.destination, str(e.conns), e.policies) == (
        "app", "db", "All Connections", ("app/out", "db/some"))  # fmt: skip
    by_expr = policy("db", "some", podSelector={"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                     ingress=[{"from": [{"namespaceSelector": {}}], "ports": [{"port": 5432}]}])  # fmt: skip
    (e,) = find(members(), [out_deny, out_all, by_expr], {("app", "deny")})  # type: ignore[list-item]
    assert str(e.conns) == "All Connections"


def test_find_reads_only_members_policies_and_opens_by_egress_alone() -> None:
    """app's tenant opens its egress; web (prod) isolates nothing: app -> web is exposed,
    found from app's egress policy alone (web has no policy at all). A tenant policy in a
    namespace outside the isolation is not read."""
    app_deny = policy("app", "deny", podSelector={}, policyTypes=["Ingress", "Egress"])
    app_out = policy("app", "out", podSelector={}, policyTypes=["Egress"], egress=[{}])
    outsider = policy("elsewhere", "open", podSelector={}, ingress=[{}])
    mems = [
        Member("app", {"environment": "dev"}, "dev"),
        Member("web", {"environment": "prod"}, "prod"),
    ]
    (e,) = find(mems, [app_deny, app_out, outsider], {("app", "deny")})  # type: ignore[list-item]
    assert (e.source, e.destination, str(e.conns), e.policies) == (
        "app",
        "web",
        "All Connections",
        ("app/out",),
    )


def test_a_fully_declared_pair_does_not_end_the_search() -> None:
    """(app, db) comes first and is open, but only as far as the managed policies open it:
    nothing undeclared there; (zz, db) after it is exposed on TCP 1."""
    mems = [Member("app", {"environment": "dev"}, "dev"), Member("db", {"environment": "prod"}, "prod"),
            Member("zz", {"environment": "dev"}, "dev")]  # fmt: skip
    denies = [
        policy(m.name, "deny", podSelector={}, policyTypes=["Ingress", "Egress"]) for m in mems
    ]
    m_out = policy("app", "m-out", podSelector={}, policyTypes=["Egress"], egress=[{}])
    m_in = policy("db", "m-in", podSelector={}, ingress=[{}])
    managed = {(m.name, "deny") for m in mems} | {("app", "m-out"), ("db", "m-in")}
    t_in = policy("db", "in", podSelector={}, ingress=[{}])  # no `from`: every peer
    zz_out = policy(
        "zz", "out", podSelector={}, policyTypes=["Egress"], egress=[{"ports": [{"port": 1}]}]
    )
    found = find(mems, [*denies, m_out, m_in, t_in, zz_out], managed)  # type: ignore[list-item]
    assert [(e.source, e.destination, str(e.conns), e.policies) for e in found] == [
        ("zz", "db", "TCP 1", ("db/in", "zz/out")),
    ]


def test_only_the_policies_that_grant_part_of_the_exposure_are_named() -> None:
    """db admits app on 80 (managed, declared) and on 443 and 80 through tenants; app's
    tenant opens only 80: the exposure is TCP 80 beyond what app's managed egress allows,
    named after app/out and db/t80, never the managed allow nor db/t443."""
    mems = members()
    deny_app = policy("app", "deny", podSelector={}, policyTypes=["Ingress", "Egress"])
    deny_db = policy("db", "deny", podSelector={}, policyTypes=["Ingress", "Egress"])

    def admits(name: str, port: int) -> object:
        rule = {"from": [{"namespaceSelector": {}}], "ports": [{"port": port}]}
        return policy("db", name, podSelector={}, ingress=[rule])

    managed_in, t80, t443 = admits("allow", 80), admits("t80", 80), admits("t443", 443)
    out = policy(
        "app", "out", podSelector={}, policyTypes=["Egress"], egress=[{"ports": [{"port": 80}]}]
    )
    managed = {("app", "deny"), ("db", "deny"), ("db", "allow")}
    (e,) = find(mems, [deny_app, deny_db, managed_in, t80, t443, out], managed)  # type: ignore[list-item]
    assert (str(e.conns), e.policies) == ("TCP 80", ("app/out", "db/t80"))
