"""`envisolation explain SRC DST`, offline: the verdict, the policies on each side, the
rule that admits (or the default-deny that stops), and whether the spec declares it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.unit.incli import run

ROOT = Path(__file__).resolve().parents[2]


def pod(ns: str, name: str, app: str, ip: str = "", named: bool = False) -> dict:
    ports = [{"containerPort": 80, "name": "http"}] if named else []
    body: dict = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
                  "spec": {"containers": [{"name": "c", "image": "i", "ports": ports}]}}  # fmt: skip
    if ip:
        body["status"] = {"podIP": ip}
    return body


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three-segment example (prod enforced), its policies as `render` keeps them, pods."""
    d = tmp_path_factory.mktemp("explain")
    iso = yaml.safe_load((ROOT / "examples" / "three-segments.yaml").read_text())
    iso["spec"]["segments"][2]["enforcement"] = "Enforce"
    (d / "iso.yaml").write_text(yaml.safe_dump(iso))
    nss = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s, "labels": {"environment": s}}}
           for s in ("dev", "test", "prod")]  # fmt: skip
    nss.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    (d / "ns.yaml").write_text(yaml.safe_dump_all(nss))
    rendered = run("render", "-f", str(d / "iso.yaml"), "--namespaces", str(d / "ns.yaml"))
    assert rendered.returncode == 0, rendered.stderr
    (d / "managed.yaml").write_text(rendered.stdout)
    pods = [pod("dev", "fe-1", "frontend", ip="10.1.0.5"), pod("dev", "be-1", "backend", named=True),
            pod("test", "fe-2", "frontend"), pod("prod", "api-1", "api"),
            pod("other", "tool", "tool", ip="fd00::7"), pod("other", "web", "web")]  # fmt: skip
    (d / "pods.yaml").write_text(yaml.safe_dump_all(pods))
    # a tenant's policy in the unmanaged namespace: it isolates web, admits nothing
    tenant = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "only-nobody", "namespace": "other"},
              "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "none"}}}]}]}}  # fmt: skip
    (d / "tenant.yaml").write_text(yaml.safe_dump(tenant))
    shutil.copy(d / "iso.yaml", d / "iso-copy.yml.bak")  # not a manifest suffix: ignored
    return d


def test_allowed_names_the_admitting_rules_and_exits_0(state: Path) -> None:
    res = run("explain", "dev/fe-1", "dev/be-1", "--port", "TCP/80", "--from", str(state))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("dev/fe-1[Pod] -> dev/be-1[Pod] on TCP 80: ALLOWED: TCP 80\n")
    assert "admitted by dev/envisolation-same-segment egress[0]: TCP 80" in res.stdout
    assert "admitted by dev/envisolation-allow-frontend-to-backend ingress[0]: TCP 80" in res.stdout
    assert "segments: both in dev (environments); sameSegment allows it" in res.stdout


def test_denied_names_the_default_deny_and_says_undeclared_and_exits_1(state: Path) -> None:
    res = run("explain", "dev/fe-1", "prod/api-1", "--from", str(state))
    assert res.returncode == 1, res.stderr
    assert "dev/fe-1[Pod] -> prod/api-1[Pod]: DENIED" in res.stdout
    assert (
        "no rule admits this flow: denied (the default-deny dev/envisolation-default-deny isolates it)"
        in res.stdout
    )
    assert "segments: dev -> prod is NOT declared in environments's spec" in res.stdout


def test_declared_cross_segment_flow(state: Path) -> None:
    res = run("explain", "test/fe-2", "prod/api-1", "--port", "tcp/8443", "--from", str(state))
    assert res.returncode == 0, res.stdout
    assert (
        "admitted by prod/envisolation-allow-test-reads-prod-api ingress[0]: TCP 8443" in res.stdout
    )
    assert (
        "admitted by test/envisolation-allow-test-calls-prod-api egress[0]: TCP 8443" in res.stdout
    )
    assert "segments: test -> prod is declared in environments's spec" in res.stdout
    assert (
        run(
            "explain", "test/fe-2", "prod/api-1", "--port", "TCP/8444", "--from", str(state)
        ).returncode
        == 1
    )


def test_an_ip_names_a_pod_or_an_outside_address(state: Path) -> None:
    res = run("explain", "10.1.0.5", "8.8.8.8", "--port", "UDP/53", "--from", str(state))
    assert res.returncode == 1
    assert res.stdout.startswith("dev/fe-1[Pod] -> 8.8.8.8-8.8.8.8[External] on UDP 53: DENIED")
    assert "ingress: the destination is outside the cluster" in res.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("dev/nope", "dev/be-1"), "dev/nope: no workload or pod of that name in namespace dev"),
    (("nonsense", "dev/be-1"), "nonsense: expected NAMESPACE/NAME"),
    (("dev/fe-1", "dev/be-1", "--port", "TCP/99999"), "--port TCP/99999: expected PROTO/PORT"),
])  # fmt: skip
def test_bad_input_exits_2_naming_it(state: Path, args: tuple[str, ...], message: str) -> None:
    res = run("explain", *args, "--from", str(state))
    assert res.returncode == 2 and message in res.stderr, res.stderr


DEV_EGRESS = "egress: selected by dev/envisolation-default-deny, dev/envisolation-dns, dev/envisolation-same-segment"
DEV_INGRESS = ("ingress: selected by dev/envisolation-allow-frontend-to-backend, "
               "dev/envisolation-default-deny, dev/envisolation-same-segment")  # fmt: skip
PROD_INGRESS = ("ingress: selected by prod/envisolation-allow-test-reads-prod-api, "
                "prod/envisolation-default-deny, prod/envisolation-same-segment")  # fmt: skip
DENIED_BY = (
    "  no rule admits this flow: denied (the default-deny {}/envisolation-default-deny isolates it)"
)
EXACT = [
    (("dev/fe-1", "dev/be-1", "--port", "TCP/80"), 0, [
        "dev/fe-1[Pod] -> dev/be-1[Pod] on TCP 80: ALLOWED: TCP 80",
        DEV_EGRESS,
        "  admitted by dev/envisolation-same-segment egress[0]: TCP 80",
        DEV_INGRESS,
        "  admitted by dev/envisolation-allow-frontend-to-backend ingress[0]: TCP 80",
        "  admitted by dev/envisolation-same-segment ingress[0]: TCP 80",
        "segments: both in dev (environments); sameSegment allows it"]),
    (("dev/fe-1", "dev/be-1"), 0, [
        "dev/fe-1[Pod] -> dev/be-1[Pod]: ALLOWED: All Connections",
        DEV_EGRESS,
        "  admitted by dev/envisolation-same-segment egress[0]: All Connections",
        DEV_INGRESS,
        "  admitted by dev/envisolation-allow-frontend-to-backend ingress[0]: TCP 80",
        "  admitted by dev/envisolation-same-segment ingress[0]: All Connections",
        "segments: both in dev (environments); sameSegment allows it"]),
    (("dev/fe-1", "prod/api-1"), 1, [
        "dev/fe-1[Pod] -> prod/api-1[Pod]: DENIED",
        DEV_EGRESS, DENIED_BY.format("dev"), PROD_INGRESS, DENIED_BY.format("prod"),
        "segments: dev -> prod is NOT declared in environments's spec: if allowed, this path is "
        "an exposure"]),
    (("test/fe-2", "prod/api-1", "--port", "tcp/8443"), 0, [
        "test/fe-2[Pod] -> prod/api-1[Pod] on TCP 8443: ALLOWED: TCP 8443",
        "egress: selected by test/envisolation-allow-test-calls-prod-api, "
        "test/envisolation-default-deny, test/envisolation-dns, test/envisolation-same-segment",
        "  admitted by test/envisolation-allow-test-calls-prod-api egress[0]: TCP 8443",
        PROD_INGRESS,
        "  admitted by prod/envisolation-allow-test-reads-prod-api ingress[0]: TCP 8443",
        "segments: test -> prod is declared in environments's spec"]),
    (("10.1.0.5", "8.8.8.8", "--port", "UDP/53"), 1, [
        "dev/fe-1[Pod] -> 8.8.8.8-8.8.8.8[External] on UDP 53: DENIED",
        DEV_EGRESS, DENIED_BY.format("dev"),
        "ingress: the destination is outside the cluster; no policy applies there"]),
    (("8.8.8.8", "dev/be-1"), 1, [
        "8.8.8.8-8.8.8.8[External] -> dev/be-1[Pod]: DENIED",
        "egress: the source is outside the cluster; no policy applies there",
        DEV_INGRESS, DENIED_BY.format("dev")]),
    (("fd00::7", "dev/be-1", "--port", "53"), 1, [
        "other/tool[Pod] -> dev/be-1[Pod] on TCP 53: DENIED",
        "egress: no policy selects the source for egress: everything is allowed",
        DEV_INGRESS, DENIED_BY.format("dev")]),
    (("other/tool", "other/web"), 1, [
        "other/tool[Pod] -> other/web[Pod]: DENIED",
        "egress: no policy selects the source for egress: everything is allowed",
        "ingress: selected by other/only-nobody",
        "  no rule admits this flow: denied"]),
    (("other/web", "other/tool", "--port", "SCTP/9"), 0, [
        "other/web[Pod] -> other/tool[Pod] on SCTP 9: ALLOWED: SCTP 9",
        "egress: no policy selects the source for egress: everything is allowed",
        "ingress: no policy selects the destination for ingress: everything is allowed"]),
]  # fmt: skip


@pytest.mark.parametrize(("args", "code", "lines"), EXACT)
def test_explain_prints_exactly(
    state: Path, args: tuple[str, ...], code: int, lines: list[str]
) -> None:
    res = run("explain", *args, "--from", str(state))
    assert (res.returncode, res.stdout) == (code, "\n".join(lines) + "\n"), res.stderr


@pytest.mark.parametrize(("text", "shown"), [
    ("80", "TCP 80"), ("udp/53", "UDP 53"), ("SCTP/1", "SCTP 1"), ("tcp/65535", "TCP 65535"),
])  # fmt: skip
def test_parse_port_reads_protocol_and_port(text: str, shown: str) -> None:
    from envisolation.analysis.explain import parse_port

    assert str(parse_port(text)) == shown


@pytest.mark.parametrize("text", ["TCP/0", "TCP/65536", "ICMP/1", "TCP/x", "TCP/", "/80", "-1"])
def test_parse_port_refuses_naming_the_flag(text: str) -> None:
    from envisolation.analysis.explain import parse_port
    from envisolation.spec.model import InvalidSpec

    with pytest.raises(InvalidSpec) as e:
        parse_port(text)
    assert str(e.value) == f"--port {text}: expected PROTO/PORT, e.g. TCP/80 or UDP/53"


def test_segment_lines_same_segment_denied_and_outside_any_isolation() -> None:
    from envisolation.analysis.explain import segment_lines
    from envisolation.analysis.netpol import External, Workload
    from envisolation.policy.render import RenderContext
    from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts

    def iso(name: str, key: str, same: bool) -> EnvironmentIsolation:
        return EnvironmentIsolation.from_body({"metadata": {"name": name}, "spec": {
            "namespaceLabel": key, "sameSegment": "Allow" if same else "Deny", "segments": [{"name": "dev"}, {"name": "prod"}]}})  # fmt: skip

    def facts(name: str, **labels: str) -> NamespaceFacts:
        return NamespaceFacts.from_body({"metadata": {"name": name, "labels": labels}})

    closed, other = iso("closed", "environment", False), iso("other", "tier", True)
    spaces = {n.name: n for n in (facts("a", environment="dev"), facts("b", environment="dev"),
                                  facts("c", tier="dev"), facts("d"))}  # fmt: skip
    ctx = RenderContext()

    def w(ns: str) -> Workload:
        return Workload(ns, "x", "Pod", ())

    assert segment_lines(w("a"), w("b"), [closed, other], spaces, ctx) == [
        "segments: both in dev (closed); sameSegment does not allow it"
    ]
    assert segment_lines(w("a"), w("c"), [closed, other], spaces, ctx) == []  # two isolations
    assert segment_lines(w("a"), w("d"), [closed, other], spaces, ctx) == []  # d is in none
    assert segment_lines(w("d"), w("a"), [closed, other], spaces, ctx) == []
    assert segment_lines(w("a"), w("zz"), [closed, other], spaces, ctx) == []  # not read
    assert segment_lines(w("a"), w("b"), [], spaces, ctx) == []
    assert segment_lines(External(1, 1), w("b"), [closed], spaces, ctx) == []
    assert segment_lines(w("a"), External(1, 1), [closed], spaces, ctx) == []


def test_resolve_names_pods_by_their_own_name_and_workloads_by_namespace() -> None:
    from envisolation.analysis.explain import resolve
    from envisolation.analysis.reachability import build
    from envisolation.spec.model import InvalidSpec

    owner = {"controller": True, "kind": "ReplicaSet", "name": "web-1"}
    rs = {"kind": "ReplicaSet", "metadata": {"name": "web-1", "namespace": "dev",
          "ownerReferences": [{"controller": True, "kind": "Deployment", "name": "web"}]}}  # fmt: skip
    pod = {"kind": "Pod", "metadata": {"name": "web-1-x", "namespace": "dev", "labels": {"app": "web"},
           "ownerReferences": [owner]}}  # fmt: skip
    lone = {"kind": "Pod", "metadata": {"name": "tool"}}  # the default namespace
    same = [{"kind": "Pod", "metadata": {"name": "api", "namespace": ns}} for ns in ("a", "b")]
    objects = [rs, pod, lone, *same, {"kind": "ConfigMap", "metadata": {"name": "web-1-x"}}]
    cluster, _ = build(objects)
    assert str(resolve("dev/web-1-x", cluster, objects)) == "dev/web[Deployment]"
    assert str(resolve("dev/web", cluster, objects)) == "dev/web[Deployment]"
    assert str(resolve("default/tool", cluster, objects)) == "default/tool[Pod]"
    assert str(resolve("b/api", cluster, objects)) == "b/api[Pod]"
    assert str(resolve("a/api", cluster, objects)) == "a/api[Pod]"
    for text, message in [
        ("a/b/c", "a/b/c: no workload or pod of that name in namespace a"),
        ("/x", "/x: expected NAMESPACE/NAME (a workload or a pod) or an IP address"),
        ("x/", "x/: expected NAMESPACE/NAME (a workload or a pod) or an IP address"),
        ("other/web-1-x", "other/web-1-x: no workload or pod of that name in namespace other"),
    ]:
        with pytest.raises(InvalidSpec) as e:
            resolve(text, cluster, objects)
        assert str(e.value) == message
    # a pod whose workload is not among those read (built from other objects)
    with pytest.raises(InvalidSpec) as e:
        resolve("default/tool", build([])[0], [lone])
    assert str(e.value) == "default/tool[Pod]: not found among the workloads read"


def test_named_ports_resolve_on_the_destination_in_explain() -> None:
    from envisolation.analysis.explain import explain
    from envisolation.analysis.reachability import build
    from envisolation.policy.render import RenderContext

    def pod(ns: str, name: str, ports: list[dict[str, object]]) -> dict[str, object]:
        return {"kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "ports": ports}]}}  # fmt: skip

    out = {"kind": "NetworkPolicy", "metadata": {"name": "out", "namespace": "a"},
           "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
               {"to": [{"namespaceSelector": {"matchLabels": {"team": "none"}}}]},
               {"ports": [{"port": "http"}]}]}}  # fmt: skip
    inn = {"kind": "NetworkPolicy", "metadata": {"name": "in", "namespace": "b"},
           "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}}  # fmt: skip
    objects = [
        pod("a", "web", []),
        pod("b", "api", [{"name": "http", "containerPort": 8080}]),
        out,
        inn,
    ]
    cluster, _ = build(objects)
    web, api = cluster.workloads[0], cluster.workloads[1]
    e = explain(cluster, web, api, None, [], {}, RenderContext())
    assert e.text() == (
        "a/web[Pod] -> b/api[Pod]: ALLOWED: TCP 8080\n"
        "egress: selected by a/out\n  admitted by a/out egress[1]: TCP 8080\n"
        "ingress: selected by b/in\n  admitted by b/in ingress[0]: TCP 8080\n"
    )


def test_an_owned_pod_without_a_namespace_and_excluded_namespaces() -> None:
    from envisolation.analysis.explain import resolve, segment_lines
    from envisolation.analysis.netpol import Workload
    from envisolation.analysis.reachability import build
    from envisolation.policy.render import RenderContext
    from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts

    rs = {"kind": "ReplicaSet", "metadata": {"name": "w-1",
          "ownerReferences": [{"controller": True, "kind": "Deployment", "name": "w"}]}}  # fmt: skip
    pod = {"kind": "Pod", "metadata": {"name": "w-1-x",
           "ownerReferences": [{"controller": True, "kind": "ReplicaSet", "name": "w-1"}]}}  # fmt: skip
    cluster, _ = build([rs, pod])
    assert str(resolve("default/w-1-x", cluster, [rs, pod])) == "default/w[Deployment]"
    iso = EnvironmentIsolation.from_body({"metadata": {"name": "e"}, "spec": {
        "segments": [{"name": "dev"}], "excludeNamespaces": ["x", "y"]}})  # fmt: skip
    spaces = {n: NamespaceFacts.from_body({"metadata": {"name": n, "labels": {"environment": "dev"}}})
              for n in ("x", "y")}  # fmt: skip
    x, y = Workload("x", "p", "Pod", ()), Workload("y", "p", "Pod", ())
    assert segment_lines(x, y, [iso], spaces, RenderContext()) == []  # excluded: in no segment


def test_a_named_port_never_admits_an_outside_address() -> None:
    from envisolation.analysis.explain import explain
    from envisolation.analysis.netpol import External
    from envisolation.analysis.reachability import build
    from envisolation.policy.render import RenderContext

    web = {
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "a"},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
    }
    out = {"kind": "NetworkPolicy", "metadata": {"name": "out", "namespace": "a"},
           "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]}}  # fmt: skip
    cluster, _ = build([web, out])
    outside = External(0x08080808, 0x08080808)
    e = explain(cluster, cluster.workloads[0], outside, None, [], {}, RenderContext())
    assert not e.allowed
    assert e.egress.lines() == ["egress: selected by a/out", "  no rule admits this flow: denied"]
