"""NetworkPolicy semantics, case by case, and the np-guard-compatible output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from envisolation.analysis.conns import ALL, NONE, Conns
from envisolation.analysis.reachability import build, connlist
from tests.unit import incli

ROOT = Path(__file__).resolve().parents[2]


def deploy(
    ns: str, name: str, ports: list[dict[str, Any]] | None = None, **labels: str
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"template": {"metadata": {"labels": labels or {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "i", "ports": ports or []}]}}},
    }  # fmt: skip


def netpol(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pairs(*objs: dict[str, Any]) -> dict[tuple[str, str], str]:
    cluster, _ = build(objs)
    return {(str(c.src), str(c.dst)): str(c.conns) for c in connlist(cluster)}


A, B = "a/web[Deployment]", "b/api[Deployment]"
EXT = "0.0.0.0-255.255.255.255[External]"


def test_no_policy_means_everything_is_open() -> None:
    got = pairs(deploy("a", "web"), deploy("b", "api"))
    assert got == {(A, B): "All Connections", (B, A): "All Connections", (EXT, A): "All Connections",
                   (EXT, B): "All Connections", (A, EXT): "All Connections", (B, EXT): "All Connections"}  # fmt: skip


def test_default_deny_ingress_closes_only_ingress() -> None:
    got = pairs(
        deploy("a", "web"), deploy("b", "api"), netpol("b", "deny", policyTypes=["Ingress"])
    )
    assert (A, B) not in got and (EXT, B) not in got
    assert got[(B, A)] == "All Connections" and got[(B, EXT)] == "All Connections"


@pytest.mark.parametrize(
    ("ingress", "open_"),
    [([], False), ([{}], True), ([{"from": []}], True), ([{"ports": []}], True)],
)
def test_empty_rules_versus_absent_versus_allow_all(ingress: list[Any], open_: bool) -> None:
    got = pairs(
        deploy("a", "web"),
        deploy("b", "api"),
        netpol("b", "p", ingress=ingress, policyTypes=["Ingress"]),
    )
    assert ((A, B) in got) is open_


def test_policy_types_are_inferred_from_egress_rules() -> None:
    # No policyTypes, egress rules present: Ingress AND Egress are isolated.
    got = pairs(
        deploy("a", "web"),
        deploy("b", "api"),
        netpol("b", "p", egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}]),
    )
    assert (A, B) not in got
    assert got[(B, A)] == "UDP 53"


def test_peer_with_both_selectors_differs_from_two_peers() -> None:
    objs = [
        namespace("a", team="x"),
        namespace("b"),
        deploy("a", "web"),
        deploy("a", "db", tier="db"),
        deploy("b", "api"),
    ]
    both = netpol(
        "b",
        "p",
        policyTypes=["Ingress"],
        ingress=[
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {"team": "x"}},
                        "podSelector": {"matchLabels": {"tier": "db"}},
                    }
                ]
            }
        ],
    )
    two = netpol(
        "b",
        "p",
        policyTypes=["Ingress"],
        ingress=[
            {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"team": "x"}}},
                    {"podSelector": {"matchLabels": {"tier": "db"}}},
                ]
            }
        ],
    )
    g1, g2 = pairs(*objs, both), pairs(*objs, two)
    assert ("a/db[Deployment]", B) in g1 and (A, B) not in g1
    assert ("a/db[Deployment]", B) in g2 and (A, B) in g2


def test_pod_selector_alone_means_the_policys_namespace() -> None:
    objs = [deploy("a", "web"), deploy("b", "api"), deploy("b", "web2", app="web")]
    p = netpol(
        "b",
        "p",
        podSelector={"matchLabels": {"app": "api"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
    )
    got = pairs(*objs, p)
    assert ("b/web2[Deployment]", B) in got and (A, B) not in got


def test_metadata_name_label_is_implied_and_expressions_work() -> None:
    objs = [deploy("a", "web"), deploy("c", "tool"), deploy("b", "api")]
    by_name = netpol(
        "b",
        "p",
        policyTypes=["Ingress"],
        ingress=[
            {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "a"}}}]}
        ],
    )
    assert set(pairs(*objs, by_name)) >= {(A, B)} and ("c/tool[Deployment]", B) not in pairs(
        *objs, by_name
    )
    for op, values, a_in, c_in in [("In", ["a"], True, False), ("NotIn", ["a"], False, True),
                                   ("Exists", [], True, True), ("DoesNotExist", [], False, False)]:  # fmt: skip
        expr = {
            "key": "kubernetes.io/metadata.name",
            "operator": op,
            **({"values": values} if values else {}),
        }
        pol = netpol(
            "b",
            "p",
            policyTypes=["Ingress"],
            ingress=[{"from": [{"namespaceSelector": {"matchExpressions": [expr]}}]}],
        )
        got = pairs(*objs, pol)
        assert ((A, B) in got, ("c/tool[Deployment]", B) in got) == (a_in, c_in), op


def test_ports_protocols_ranges_and_named_ports() -> None:
    api = deploy(
        "b",
        "api",
        ports=[
            {"name": "http", "containerPort": 8080},
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
        ],
    )
    pol = netpol("b", "p", policyTypes=["Ingress"], ingress=[{"ports": [
        {"port": 8081}, {"port": "http"}, {"port": "dns", "protocol": "UDP"}, {"port": "dns"},
        {"protocol": "SCTP", "port": 7070}, {"protocol": "UDP", "port": 9000, "endPort": 9010}, {"port": "missing"}]}])  # fmt: skip
    got = pairs(deploy("a", "web"), api, pol)
    assert got[(A, B)] == "SCTP 7070,TCP 8080-8081,UDP 53,9000-9010"


def test_a_connection_needs_egress_at_the_source_and_ingress_at_the_destination() -> None:
    out = netpol(
        "a", "out", policyTypes=["Egress"], egress=[{"ports": [{"port": 80}, {"port": 443}]}]
    )
    inn = netpol(
        "b", "in", policyTypes=["Ingress"], ingress=[{"ports": [{"port": 443}, {"port": 8443}]}]
    )
    assert pairs(deploy("a", "web"), deploy("b", "api"), out, inn)[(A, B)] == "TCP 443"


def test_ip_blocks_split_the_address_space() -> None:
    pol = netpol(
        "b",
        "p",
        policyTypes=["Ingress"],
        ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}],
    )
    got = pairs(deploy("b", "api"), pol)
    assert got == {
        ("10.0.0.0-10.0.255.255[External]", B): "All Connections",
        ("10.2.0.0-10.255.255.255[External]", B): "All Connections",
        (B, EXT): "All Connections",
    }


def test_pods_are_named_after_their_controller() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "frontend-99684f7f8-x1", "labels": {"app": "f"},
                        "ownerReferences": [{"kind": "ReplicaSet", "name": "frontend-99684f7f8", "controller": True}]},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}  # fmt: skip
    lone = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lone", "namespace": "x"},
        "spec": {"containers": []},
    }
    got = pairs(pod, lone)
    assert ("default/frontend-99684f7f8[ReplicaSet]", "x/lone[Pod]") in got


def test_conns_algebra_and_format() -> None:
    c = Conns.of("TCP", 8080, 8081) | Conns.of("UDP", 9090) | Conns.of("SCTP", 7070)
    assert str(c) == "SCTP 7070,TCP 8080-8081,UDP 9090"
    assert str(ALL) == "All Connections"
    assert not NONE
    assert (Conns.of("TCP", 1, 100) & Conns.of("TCP", 50, 200)) == Conns.of("TCP", 50, 100)
    assert str(Conns.of("TCP") - Conns.of("TCP", 2, 65535)) == "TCP 1"
    assert Conns.of("TCP") | Conns.of("UDP") | Conns.of("SCTP") == ALL


def test_cli_prints_every_format(tmp_path: Path) -> None:
    d = tmp_path / "m"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "a.yml").write_text(json.dumps(deploy("a", "web")))
    (d / "b.json").write_text(
        json.dumps(
            {
                "kind": "List",
                "items": [deploy("b", "api"), netpol("b", "deny", policyTypes=["Ingress"])],
            }
        )
    )
    (d / "svc.yaml").write_text("kind: Service\nmetadata: {name: s}\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return incli.run("reachability", str(d), *args)

    txt = run()
    assert txt.returncode == 0, txt.stderr
    assert txt.stdout.splitlines()[0] == f"{EXT} => {A} : All Connections"
    assert f"{B} => {A} : All Connections" in txt.stdout and f"{A} => {B}" not in txt.stdout
    assert "note: skipping Service s" in txt.stderr
    rows = json.loads(run("-o", "json").stdout)
    assert rows[0] == {"src": EXT, "dst": A, "conn": "All Connections"}
    assert run("-o", "csv").stdout.splitlines()[0] == "src,dst,conn"
    assert run("-o", "md").stdout.splitlines()[0] == "| src | dst | conn |"
    bad = incli.run("reachability", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "no such file" in bad.stderr


def test_ip_blocks_never_match_pods_in_the_cluster() -> None:
    """An ipBlock peer covers addresses outside the cluster only: a pod whose address
    falls inside it is not admitted by it."""
    pol = netpol("b", "p", policyTypes=["Ingress"],
                 ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}])  # fmt: skip
    got = pairs(deploy("a", "web"), deploy("b", "api"), pol)
    assert (A, B) not in got and got[(EXT, B)] == "All Connections"


def test_named_ports_resolve_on_the_destination_for_outside_sources_and_egress() -> None:
    api = deploy("b", "api", ports=[{"name": "http", "containerPort": 8080}])
    inn = netpol("b", "in", policyTypes=["Ingress"],
                 ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": "http"}]}])  # fmt: skip
    out = netpol("a", "out", policyTypes=["Egress"],
                 egress=[{"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}])  # fmt: skip
    got = pairs(deploy("a", "web"), api, inn, out)
    assert got[("10.0.0.0-10.255.255.255[External]", B)] == "TCP 8080"
    assert (A, B) not in got  # b admits only 10.0.0.0/8
    open_b = pairs(deploy("a", "web"), api, out)
    assert open_b[(A, B)] == "TCP 8080"  # egress by name: the destination's port
    assert (A, EXT) not in open_b  # an outside address has no named ports


def test_every_pair_but_self_is_listed_in_byte_order() -> None:
    objs = [deploy("a", "web"), deploy("b", "api"), deploy("c", "db")]
    cluster, notes = build(objs)
    names = [(str(c.src), str(c.dst)) for c in connlist(cluster)]
    ws = ["a/web[Deployment]", "b/api[Deployment]", "c/db[Deployment]"]
    want = [(x, y) for x in ws for y in [*ws, EXT] if x != y] + [(EXT, w) for w in ws]
    assert names == sorted(want, key=lambda p: (p[0].encode(), p[1].encode()))
    assert notes == []


def test_namespace_objects_carry_their_labels_and_the_implied_name() -> None:
    pol = netpol("b", "p", policyTypes=["Ingress"], ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "a", "team": "x"}}}]}])  # fmt: skip
    objs = [namespace("a", team="x"), namespace("c", team="x"), deploy("a", "web"),
            deploy("c", "tool"), deploy("b", "api"), pol]  # fmt: skip
    got = pairs(*objs)
    assert (A, B) in got and ("c/tool[Deployment]", B) not in got
    cluster, _ = build(objs)
    assert cluster.namespaces["a"] == {"team": "x", "kubernetes.io/metadata.name": "a"}
    assert cluster.namespaces["b"] == {"kubernetes.io/metadata.name": "b"}


def test_skipped_objects_are_noted_by_kind_and_name() -> None:
    _, notes = build([{"kind": "Service", "metadata": {"name": "s"}}, {"kind": "ConfigMap"}])
    assert notes == ["skipping Service s", "skipping ConfigMap "]


def test_address_families_follow_the_pods_and_blocks() -> None:
    def pod(name: str, *ips: str) -> dict[str, Any]:
        return {"kind": "Pod", "metadata": {"name": name, "namespace": "a"},
                "status": {"podIPs": [{"ip": ip} for ip in ips]}}  # fmt: skip

    assert build([pod("v4", "10.0.0.1")])[0].families == (4,)
    assert build([pod("v4", "10.0.0.1"), pod("v6", "fd00::1")])[0].families == (4, 6)
    six = netpol("a", "p", ingress=[{"from": [{"ipBlock": {"cidr": "fd00::/8"}}]}])
    assert build([pod("v4", "10.0.0.1"), six])[0].families == (4, 6)


def test_pod_ips_reads_pod_ip_and_pod_ips_skipping_what_does_not_parse() -> None:
    from envisolation.analysis.netpol import pod_ips

    body = {"status": {"podIPs": [{"ip": "nonsense"}, {"ip": "fd00::1"}, {"ip": "10.0.0.1"}, "x"]}}
    assert {str(a) for a in pod_ips(body)} == {"fd00::1", "10.0.0.1"}
    assert {str(a) for a in pod_ips({"status": {"podIP": "10.0.0.2"}})} == {"10.0.0.2"}
    assert pod_ips({"status": "Running"}) == set()


def test_pods_of_a_deployment_without_a_namespace_are_in_default() -> None:
    owner = {"kind": "Deployment", "name": "web", "controller": True}
    rs = {"kind": "ReplicaSet", "metadata": {"name": "web-1", "ownerReferences": [owner]}}
    pod = {"kind": "Pod", "metadata": {"name": "web-1-x", "labels": {"app": "web"},
           "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "controller": True}]}}  # fmt: skip
    cluster, _ = build([rs, pod])
    assert [str(w) for w in cluster.workloads] == ["default/web[Deployment]"]


def test_workloads_of_every_shape() -> None:
    from envisolation.analysis.netpol import ContainerPort, parse_workload

    cron = {"kind": "CronJob", "metadata": {"name": "nightly", "namespace": "ops"},
            "spec": {"jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"app": "nightly"}},
                "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 9000}]}]}}}}}}  # fmt: skip
    w = parse_workload(cron)
    assert (str(w), w.labels, w.ports) == (
        "ops/nightly[CronJob]", (("app", "nightly"),), (ContainerPort("", 9000, "TCP"),))  # fmt: skip
    assert parse_workload({"kind": "CronJob", "metadata": {"name": "x"}}).labels == ()
    init = {"kind": "Pod", "metadata": {"name": "p", "namespace": "a", "labels": {"b": "2", "a": "1"}},
            "spec": {"containers": [{"ports": [{"containerPort": 80, "name": "http"}]}],
                     "initContainers": [{"ports": [{"containerPort": 53, "protocol": "UDP"},
                                                   {"name": "no-number"}]}]}}  # fmt: skip
    p = parse_workload(init)
    assert p.labels == (("a", "1"), ("b", "2"))
    assert p.ports == (ContainerPort("http", 80, "TCP"), ContainerPort("", 53, "UDP"))
    bare = parse_workload({"kind": "Pod"})
    assert (bare.namespace, bare.name, bare.kind) == ("default", "", "Pod")


def test_owner_chains_cycles_and_incomplete_references() -> None:
    from envisolation.analysis.netpol import controller_of, workload_name

    assert controller_of({"ownerReferences": [
        {"kind": "ReplicaSet", "name": "a"},  # not the controller
        {"controller": True, "name": "b"},  # no kind
        {"controller": True, "kind": "Job"},  # no name
        "junk",
        {"controller": True, "kind": "Job", "name": "j"}]}) == ("Job", "j")  # fmt: skip
    assert (
        controller_of({"ownerReferences": [{"controller": False, "kind": "Job", "name": "j"}]})
        is None
    )
    loop = {
        ("n", "ReplicaSet", "a"): ("ReplicaSet", "b"),
        ("n", "ReplicaSet", "b"): ("ReplicaSet", "a"),
    }
    pod = {"kind": "Pod", "metadata": {"name": "p", "namespace": "n", "ownerReferences": [
        {"controller": True, "kind": "ReplicaSet", "name": "a"}]}}  # fmt: skip
    assert workload_name(pod, loop) == ("ReplicaSet", "a")  # the cycle stops where it repeats
    tail = {("n", "ReplicaSet", "a"): ("Job", "b"), ("n", "Job", "b"): ("CronJob", "c"),
            ("n", "CronJob", "c"): ("Job", "b")}  # fmt: skip
    assert workload_name(pod, tail) == ("Job", "b")  # a cycle that does not come back to a
    chain = {("default", "ReplicaSet", "rs"): ("Deployment", "web")}
    lone = {"kind": "Pod", "metadata": {"name": "p", "ownerReferences": [
        {"controller": True, "kind": "ReplicaSet", "name": "rs"}]}}  # fmt: skip
    assert workload_name(lone, chain) == ("Deployment", "web")
    static = {"kind": "Pod", "metadata": {"name": "s", "ownerReferences": [
        {"controller": True, "kind": "Node", "name": "n1"}]}}  # fmt: skip
    assert workload_name(static, {}) == ("Pod", "s")


def pol_body(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "n", "name": "p"}, "spec": spec}


AT = "NetworkPolicy n/p: spec."


@pytest.mark.parametrize(("body", "message"), [
    ({"metadata": "x"}, "metadata: must be an object, got str"),
    ({"metadata": {"name": "p"}, "spec": "x"}, "NetworkPolicy default/p: spec: must be an object, got str"),
    (pol_body(policyTypes="Ingress"), AT + "policyTypes: must be a list, got str"),
    (pol_body(ingress="x"), AT + "ingress: must be a list, got str"),
    (pol_body(ingress=["x"]), AT + "ingress[0]: must be an object, got str"),
    (pol_body(ingress=[{"from": "x"}]), AT + "ingress[0].from: must be a list, got str"),
    (pol_body(ingress=[{"from": ["x"]}]), AT + "ingress[0].from[0]: must be an object, got str"),
    (pol_body(ingress=[{"from": [{"ipBlock": "x"}]}]),
     AT + "ingress[0].from[0].ipBlock: must be an object, got str"),
    (pol_body(ingress=[{"from": [{"ipBlock": {"cidr": "nope"}}]}]),
     AT + "ingress[0].from[0].ipBlock: 'nope' does not appear to be an IPv4 or IPv6 network"),
    (pol_body(ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": "x"}}]}]),
     AT + "ingress[0].from[0].ipBlock.except: must be a list, got str"),
    (pol_body(ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["bad"]}}]}]),
     AT + "ingress[0].from[0].ipBlock: 'bad' does not appear to be an IPv4 or IPv6 network"),
    (pol_body(ingress=[{"from": [{"podSelector": "x"}]}]),
     AT + "ingress[0].from[0].podSelector: must be an object, got str"),
    (pol_body(ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"a": 1}}}]}]),
     AT + "ingress[0].from[0].namespaceSelector.matchLabels.a: must be a string, got int"),
    (pol_body(podSelector={"matchLabels": {"a": 1}}), AT + "podSelector.matchLabels.a: must be a string, got int"),
    (pol_body(ingress=[{"ports": "x"}]), AT + "ingress[0].ports: must be a list, got str"),
    (pol_body(ingress=[{"ports": ["x"]}]), AT + "ingress[0].ports[0]: must be an object, got str"),
    (pol_body(ingress=[{"ports": [{"port": 1.5}]}]),
     AT + "ingress[0].ports[0].port: must be a number or a port name"),
    (pol_body(ingress=[{"ports": [{"port": 80, "endPort": True}]}]),
     AT + "ingress[0].ports[0].endPort: must be a number"),
    (pol_body(ingress=[{"ports": [{"port": 80, "endPort": "90"}]}]),
     AT + "ingress[0].ports[0].endPort: must be a number"),
    (pol_body(egress=[{"to": ["x"]}], policyTypes=["Egress"]), AT + "egress[0].to[0]: must be an object, got str"),
])  # fmt: skip
def test_a_malformed_policy_is_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    from envisolation.analysis.netpol import parse_policy
    from envisolation.spec.model import InvalidSpec

    with pytest.raises(InvalidSpec) as e:
        parse_policy(body)
    assert str(e.value) == message


def test_policy_parts_are_read() -> None:
    from envisolation.analysis.netpol import PortRule, parse_policy

    p = parse_policy(pol_body(podSelector={"matchLabels": {"a": "b"}}, ingress=[
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/8", "10.1.0.0/16"]}}],
         "ports": [{"port": "http"}, {"protocol": "UDP", "port": 53, "endPort": 60}, {}]}]))  # fmt: skip
    assert p.egress is None and p.pod_selector.match_labels == (("a", "b"),)
    (rule,) = p.ingress or ()
    assert rule.ports == (
        PortRule("TCP", "http", None),
        PortRule("UDP", 53, 60),
        PortRule("TCP", None, None),
    )
    (peer,) = rule.peers or ()
    assert peer.blocks == ((4, 0x0A000000, 0x0A00FFFF), (4, 0x0A020000, 0x0AFFFFFF))
    both = parse_policy(pol_body(egress=[{"to": []}]))  # types inferred: egress rules present
    assert both.ingress == () and both.egress == (type(rule)(None, None),)


def test_egress_closed_to_one_destination_still_reaches_the_next() -> None:
    out = netpol("a", "out", policyTypes=["Egress"], egress=[{"to": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "c"}}}]}])  # fmt: skip
    got = pairs(deploy("a", "web"), deploy("b", "api"), deploy("c", "db"), out)
    assert (A, B) not in got and got[(A, "c/db[Deployment]")] == "All Connections"


def test_a_port_without_number_adds_its_protocol_and_a_numeric_string_is_a_number() -> None:
    pol = netpol("b", "p", policyTypes=["Ingress"],
                 ingress=[{"ports": [{"port": 80}, {"protocol": "UDP"}, {"port": "8080"}]}])  # fmt: skip
    assert pairs(deploy("a", "web"), deploy("b", "api"), pol)[(A, B)] == "TCP 80,8080,UDP 1-65535"


def test_ip_block_edges_and_excepts_not_on_a_network_boundary() -> None:
    from envisolation.analysis.netpol import parse_policy

    def blocks(cidr: str, *excepts: str) -> object:
        p = parse_policy(
            pol_body(ingress=[{"from": [{"ipBlock": {"cidr": cidr, "except": list(excepts)}}]}])
        )
        return (p.ingress or ())[0].peers[0].blocks  # type: ignore[index]

    assert blocks("10.0.0.5/24", "10.0.0.7/31") == (
        (4, 0x0A000000, 0x0A000005),
        (4, 0x0A000008, 0x0A0000FF),
    )
    assert blocks("10.0.0.0/30", "10.0.0.0/32") == ((4, 0x0A000001, 0x0A000003),)
    assert blocks("10.0.0.0/30", "10.0.0.3/32") == ((4, 0x0A000000, 0x0A000002),)
    assert blocks("10.0.0.0/31", "10.0.0.2/31") == ((4, 0x0A000000, 0x0A000001),)


def test_a_policy_without_a_name_and_a_pod_selector_peer_with_a_namespace() -> None:
    from envisolation.analysis.netpol import parse_policy

    assert parse_policy({"spec": {}}).name == ""
