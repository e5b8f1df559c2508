"""Dual-stack: IPv6 wherever the analysis looks (reachability, explain, exposure, verify,
the spec and its render). Fixtures are written here; addresses are documentation ranges
(2001:db8::/32, 192.0.2.0/24, 203.0.113.0/24), never a target."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from envisolation.analysis import reachability as r
from envisolation.analysis.exposure import WidePrefixes
from envisolation.analysis.verify import reports_from_objects
from envisolation.cli import render_all
from envisolation.policy.render import RenderContext
from envisolation.spec.model import EnvironmentIsolation, InvalidSpec, NamespaceFacts
from tests.unit.incli import run
from tests.unit.test_exposure import iso, ns, tenant, world

ROOT = Path(__file__).resolve().parents[2]
CTX = RenderContext()


def pod(namespace: str, name: str, *ips: str, app: str = "web") -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }  # fmt: skip
    if ips:
        body["status"] = {"podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}
    return body


def netpol(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


V6_ONLY = netpol(
    "shop", "v6-only", policyTypes=["Ingress", "Egress"],
    ingress=[{"from": [{"ipBlock": {"cidr": "2001:db8::/32"}}]}],
    egress=[{"to": [{"ipBlock": {"cidr": "::/0", "except": ["2001:db8::/32"]}}]}],
)  # fmt: skip


def lines(*objs: dict[str, Any]) -> list[str]:
    cluster, _ = r.build(objs)
    return [f"{c.src} => {c.dst} : {c.conns}" for c in r.connlist(cluster)]


# -- reachability ------------------------------------------------------------------------------


def test_an_ipv6_only_policy_is_listed_split_at_its_edges() -> None:
    """The issue's example: it used to print nothing at all."""
    assert lines(pod("shop", "web"), V6_ONLY) == [
        "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff[External] => shop/web[Pod] : All Connections",
        "shop/web[Pod] => 2001:db9::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff[External] : All Connections",
        "shop/web[Pod] => ::-2001:db7:ffff:ffff:ffff:ffff:ffff:ffff[External] : All Connections",
    ]  # fmt: skip


def test_the_families_are_kept_apart() -> None:
    """`0.0.0.0/0` never covers an IPv6 address and `::/0` never an IPv4 one; an except
    of the other family leaves nothing out."""
    both = netpol(
        "shop", "both", policyTypes=["Ingress"],
        ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["2001:db8::/32"]}}],
                  "ports": [{"port": 443}]},
                 {"from": [{"ipBlock": {"cidr": "2001:db8:1::/48"}}], "ports": [{"port": 22}]}],
    )  # fmt: skip
    got = lines(pod("shop", "web"), both)
    assert "0.0.0.0-255.255.255.255[External] => shop/web[Pod] : TCP 443" in got
    assert (
        "2001:db8:1::-2001:db8:1:ffff:ffff:ffff:ffff:ffff[External] => shop/web[Pod] : TCP 22"
        in got
    )
    ingress = [x for x in got if x.endswith("=> shop/web[Pod] : TCP 443") or "=> shop/web" in x]
    assert len(ingress) == 2  # no IPv6 range on 443, no IPv4 range on 22
    # egress is not isolated: both families are open, one range each
    assert "shop/web[Pod] => 0.0.0.0-255.255.255.255[External] : All Connections" in got
    assert (
        "shop/web[Pod] => ::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff[External] : All Connections"
        in got
    )


def test_ipv6_except_inside_an_ipv6_cidr() -> None:
    pol = netpol("shop", "p", policyTypes=["Ingress"], ingress=[{"from": [{"ipBlock": {
        "cidr": "2001:db8::/32", "except": ["2001:db8:0:1::/64", "2001:db8:ff00::/40"]}}]}])  # fmt: skip
    got = [
        x
        for x in lines(pod("shop", "web"), pol)
        if x.endswith("All Connections") and "=> shop" in x
    ]
    assert got == [
        "2001:db8:0:2::-2001:db8:feff:ffff:ffff:ffff:ffff:ffff[External] => shop/web[Pod] : All Connections",
        "2001:db8::-2001:db8::ffff:ffff:ffff:ffff[External] => shop/web[Pod] : All Connections",
    ]  # fmt: skip


def test_ipv4_only_input_lists_only_ipv4_and_an_ipv6_pod_address_adds_ipv6() -> None:
    assert lines(pod("shop", "web"), pod("shop", "db", app="db")) == [
        "0.0.0.0-255.255.255.255[External] => shop/db[Pod] : All Connections",
        "0.0.0.0-255.255.255.255[External] => shop/web[Pod] : All Connections",
        "shop/db[Pod] => 0.0.0.0-255.255.255.255[External] : All Connections",
        "shop/db[Pod] => shop/web[Pod] : All Connections",
        "shop/web[Pod] => 0.0.0.0-255.255.255.255[External] : All Connections",
        "shop/web[Pod] => shop/db[Pod] : All Connections",
    ]
    dual = lines(pod("shop", "web", "192.0.2.10", "2001:db8::10"))
    assert dual == [
        "0.0.0.0-255.255.255.255[External] => shop/web[Pod] : All Connections",
        "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff[External] => shop/web[Pod] : All Connections",
        "shop/web[Pod] => 0.0.0.0-255.255.255.255[External] : All Connections",
        "shop/web[Pod] => ::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff[External] : All Connections",
    ]


@pytest.mark.parametrize("fmt", ["json", "csv", "md", "dot"])
def test_every_output_format_carries_ipv6_ranges(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "in.yaml").write_text(yaml.safe_dump_all([pod("shop", "web"), V6_ONLY]))
    res = run("reachability", "-o", fmt, str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff" in res.stdout
    assert "2001:db9::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" in res.stdout
    if fmt == "json":
        rows = json.loads(res.stdout)
        assert {x["src"] for x in rows} == {
            "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff[External]", "shop/web[Pod]"}  # fmt: skip


# -- explain -----------------------------------------------------------------------------------


def test_explain_takes_ipv6_addresses_of_pods_and_outside(tmp_path: Path) -> None:
    (tmp_path / "in.yaml").write_text(
        yaml.safe_dump_all([pod("shop", "web", "192.0.2.10", "2001:db8:ffff::10"), V6_ONLY])
    )
    inside = run("explain", "2001:db8::1", "2001:db8:ffff::10", "--from", str(tmp_path))
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.startswith("2001:db8::1-2001:db8::1[External] -> shop/web[Pod]: ALLOWED")
    assert "admitted by shop/v6-only ingress[0]: All Connections" in inside.stdout
    # the pod found by its IPv4 address is the same pod; an address outside the block is denied
    out = run("explain", "192.0.2.10", "2001:db8::53", "--port", "UDP/53", "--from", str(tmp_path))
    assert out.returncode == 1, out.stderr
    assert out.stdout.startswith(
        "shop/web[Pod] -> 2001:db8::53-2001:db8::53[External] on UDP 53: DENIED"
    )
    ok = run("explain", "shop/web", "2001:db9::53", "--port", "UDP/53", "--from", str(tmp_path))
    assert ok.returncode == 0 and "admitted by shop/v6-only egress[0]: UDP 53" in ok.stdout


# -- exposure and verify -------------------------------------------------------------------------


def test_verify_reports_a_wide_ipv6_block_like_an_ipv4_one_and_the_matrix_shows_it() -> None:
    """The issue's example: prod admits ::/0, dev admits 0.0.0.0/0 (isolate: [Ingress])."""
    prod = tenant("app-prod", ingress=[{"from": [{"ipBlock": {"cidr": "::/0"}}]}])
    dev = tenant("app-dev", ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}])
    (rep,) = reports_from_objects(world(iso(isolate=["Ingress"]), prod, dev), CTX)
    assert [(e.source, e.destination) for e in rep.exposures] == [
        ("ipBlock 0.0.0.0-255.255.255.255", "app-dev"),
        ("ipBlock ::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "app-prod"),
    ]
    assert (
        rep.matrix[("dev", "prod")] == "exposed"
    )  # prod is not isolated: ::/0 may hold dev's pods
    assert rep.matrix[("prod", "dev")] == "exposed"


@pytest.mark.parametrize(("cidr", "wide"), [
    ("2001:db8::/48", True), ("2001:db8::/56", True), ("2001:db8::/57", False),
    ("2001:db8::/64", False), ("10.0.0.0/16", True), ("10.0.0.0/17", False),
])  # fmt: skip
def test_the_default_thresholds_per_family(cidr: str, wide: bool) -> None:
    pol = tenant("db-prod", ingress=[{"from": [{"ipBlock": {"cidr": cidr}}]}])
    (rep,) = reports_from_objects(world(iso(), pol), CTX)
    assert bool(rep.exposures) is wide


def test_an_egress_ipv6_block_with_except_is_reported_per_remaining_range() -> None:
    pol = tenant("app-prod", policyTypes=["Egress"], egress=[
        {"to": [{"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:8000::/33"]}}]}])  # fmt: skip
    (rep,) = reports_from_objects(world(iso(), pol), CTX)
    assert [(e.source_segment, e.source, e.destination) for e in rep.exposures] == [
        ("prod", "app-prod", "ipBlock 2001:db8::-2001:db8:7fff:ffff:ffff:ffff:ffff:ffff")]  # fmt: skip
    assert rep.matrix[("prod", "dev")] == "exposed"


def test_thresholds_are_settings(tmp_path: Path) -> None:
    pol = tenant("db-prod", ingress=[{"from": [{"ipBlock": {"cidr": "2001:db8::/64"}}]}])
    objs = world(iso(), pol)
    assert reports_from_objects(objs, CTX)[0].exposures == ()
    assert reports_from_objects(objs, CTX, WidePrefixes(ipv6=64))[0].exposures != ()
    (tmp_path / "w.yaml").write_text(yaml.safe_dump_all(objs))
    assert run("verify", "--from", str(tmp_path)).returncode == 0
    flagged = run("verify", "--from", str(tmp_path), "--wide-ipv6-prefix", "64")
    assert (
        flagged.returncode == 1
        and "ipBlock 2001:db8::-2001:db8::ffff:ffff:ffff:ffff" in flagged.stdout
    )
    for flag, value, message in (("--wide-ipv6-prefix", "129", "IPv6 wide prefix must be 0-128"),
                                 ("--wide-ipv4-prefix", "33", "IPv4 wide prefix must be 0-32")):  # fmt: skip
        bad = run("verify", "--from", str(tmp_path), flag, value)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    bad_run = run("run", "--wide-ipv4-prefix", "-1")
    assert bad_run.returncode == 2 and "IPv4 wide prefix must be 0-32" in bad_run.stderr


# -- the spec and its render -------------------------------------------------------------------


def test_ipv6_ip_blocks_with_except_are_validated_and_rendered() -> None:
    cr = iso(allow=[{"name": "v6", "ingress": [{"from": [
        {"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}]}]}])  # fmt: skip
    rendered = render_all([EnvironmentIsolation.from_body(cr)],
                          [NamespaceFacts.from_body(ns("app-prod", "prod"))], CTX)  # fmt: skip
    (allow,) = [p for p in rendered if p["metadata"]["name"] == "envisolation-allow-v6"]
    assert allow["spec"]["ingress"] == [  # type: ignore[typeddict-item]
        {"from": [{"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}]}]  # fmt: skip


@pytest.mark.parametrize(("block", "message"), [
    ({"cidr": "2001:db8::/32", "except": ["2001:db9::/48"]}, "'2001:db9::/48' is not inside 2001:db8::/32"),
    ({"cidr": "2001:db8::/32", "except": ["10.0.0.0/8"]}, "'10.0.0.0/8' is not inside 2001:db8::/32"),
    ({"cidr": "10.0.0.0/8", "except": ["2001:db8::/48"]}, "'2001:db8::/48' is not inside 10.0.0.0/8"),
    ({"cidr": "2001:db8::/129"}, "is not a valid CIDR"),
])  # fmt: skip
def test_an_except_outside_its_cidr_is_refused_in_both_families(
    block: dict[str, Any], message: str
) -> None:
    cr = iso(allow=[{"name": "v6", "ingress": [{"from": [{"ipBlock": block}]}]}])
    with pytest.raises(
        InvalidSpec, match=re.escape("spec.allow[0].ingress[0].from[0].ipBlock")
    ) as e:
        EnvironmentIsolation.from_body(cr)
    assert message in str(e.value)


def test_verify_dot_draws_wide_blocks_as_their_own_red_nodes(tmp_path: Path) -> None:
    prod = tenant("app-prod", ingress=[{"from": [{"ipBlock": {"cidr": "::/0"}}]}])
    (tmp_path / "w.yaml").write_text(yaml.safe_dump_all(world(iso(isolate=["Ingress"]), prod)))
    res = run("verify", "--from", str(tmp_path), "-o", "dot")
    assert res.returncode == 1, res.stderr
    block = "ipBlock ::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    assert f'"env/{block}" [shape="ellipse", label="{block}"];' in res.stdout
    assert (
        f'"env/{block}" -> "env/prod" [label="EXPOSED All Connections by app-prod/tenant", color="red"'
        in res.stdout
    )
