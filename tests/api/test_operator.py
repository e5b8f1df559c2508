"""The operator as a real process against the real control plane, driven with kubectl."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
import urllib.request
from typing import Any

import pytest

from envisolation.policy.plan import canonical
from envisolation.policy.render import RenderContext, decide
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts
from tests.api.conftest import Kubectl, Operator, eventually

pytestmark = pytest.mark.api

DENY = "envisolation-default-deny"
SAME = "envisolation-same-segment"
DNS = "envisolation-dns"


def rendered(kubectl: Kubectl, iso: str, ns: str) -> dict[str, Any]:
    """What `envisolation render` says this namespace must hold, by name."""
    body = kubectl.json("get", "enviso", iso)
    facts = NamespaceFacts.from_body(kubectl.json("get", "namespace", ns))
    d = decide(facts, [EnvironmentIsolation.from_body(body)], RenderContext())
    return {p["metadata"]["name"]: p for p in d.desired}


def sentinel(kubectl: Kubectl, iso: str, label: str, make_ns: Any, segment: str = "dev") -> str:
    """The sign that the operator has handled every change made before this call, before a
    test asserts that something did not happen: a namespace created now in a segment of
    `iso` gets its policies from a pass that took it after those changes (one watch
    delivers namespaces in order; a plan that writes nothing ends before one that writes)."""
    ns = make_ns({label: segment})
    eventually(lambda: holds_exactly(kubectl, iso, ns))
    return ns


def isolation_forgotten(operator: Any, iso: str) -> bool:
    """The operator's namespace gauge no longer counts `iso`: a pass after its deletion."""
    with urllib.request.urlopen(f"http://{operator.metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    return f'isolation="{iso}"' not in "".join(
        line for line in text.splitlines() if line.startswith("envisolation_namespaces{")
    )


def holds_exactly(kubectl: Kubectl, iso: str, ns: str) -> dict[str, dict[str, Any]]:
    """The namespace's managed policies, once they equal the rendered ones (else fail)."""
    want = rendered(kubectl, iso, ns)
    live = {
        n: p
        for n, p in kubectl.policies(ns).items()
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "envisolation"
    }
    assert set(live) == set(want), f"{ns}: live {sorted(live)} != rendered {sorted(want)}"
    for n, p in want.items():
        assert canonical(live[n]["spec"]) == canonical(p["spec"]), f"{ns}/{n} spec differs"
        labels = live[n]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in p["metadata"]["labels"].items()), (
            f"{ns}/{n} labels"
        )
    return live


def condition(kubectl: Kubectl, iso: str, ctype: str) -> dict[str, Any]:
    status = kubectl.json("get", "enviso", iso).get("status") or {}
    return next((c for c in status.get("conditions", []) if c["type"] == ctype), {})


def ready(kubectl: Kubectl, iso: str) -> bool:
    body = kubectl.json("get", "enviso", iso)
    status = body.get("status") or {}
    cond = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
    return (
        cond.get("status") == "True"
        and status.get("observedGeneration") == body["metadata"]["generation"]
    )


class Watch:
    """`kubectl get networkpolicies -w` in the background: every state the API shows."""

    def __init__(self, kubectl: Kubectl, ns: str) -> None:
        argv = [str(kubectl.cluster.bin_dir / "kubectl"), "get", "networkpolicies", "-n", ns,
                "--watch", "--output-watch-events", "-o", "json"]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=kubectl.env)
        self.events: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        decoder, buf = json.JSONDecoder(), ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            buf += line
            while buf.strip():
                try:
                    obj, end = decoder.raw_decode(buf.lstrip())
                except ValueError:
                    break
                self.events.append(obj)
                buf = buf.lstrip()[end:]

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(1)
        self.proc.terminate()
        self._thread.join(timeout=5)
        return self.events


def test_new_labelled_namespace_gets_exactly_its_policies_allows_before_deny(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    rule = {
        "name": "web",
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"ports": [{"port": 80}]}],
    }
    iso = make_iso(label, allow=[rule])
    ns = make_ns({label: "dev"})
    live = eventually(lambda: holds_exactly(kubectl, iso, ns))
    assert set(live) == {DENY, SAME, DNS, "envisolation-allow-web"}
    rv = {n: int(p["metadata"]["resourceVersion"]) for n, p in live.items()}
    assert rv[DENY] > max(v for n, v in rv.items() if n != DENY), "the deny came before an allow"
    for p in live.values():
        managers = {m["manager"] for m in p["metadata"]["managedFields"]}
        assert managers == {"envisolation"}
    eventually(lambda: ready(kubectl, iso))


def test_relabel_dev_to_prod_updates_in_place_and_never_drops_the_deny(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    dev_only = {"name": "debug", "segments": ["dev"], "ingress": [{}]}
    iso = make_iso(label, allow=[dev_only])
    ns = make_ns({label: "dev"})
    before = eventually(lambda: holds_exactly(kubectl, iso, ns))
    watch = Watch(kubectl, ns)
    eventually(lambda: len(watch.events) >= len(before), timeout=10)
    kubectl("label", "namespace", ns, f"{label}=prod", "--overwrite")
    after = eventually(lambda: holds_exactly(kubectl, iso, ns))
    events = watch.stop()
    assert "envisolation-allow-debug" not in after
    assert after[SAME]["metadata"]["labels"]["envisolation.io/segment"] == "prod"
    for name in (DENY, SAME, DNS):
        assert after[name]["metadata"]["uid"] == before[name]["metadata"]["uid"], (
            f"{name} re-created"
        )
    state: dict[str, Any] = {}
    for i, ev in enumerate(events):
        obj = ev["object"]
        if ev["type"] == "DELETED":
            state.pop(obj["metadata"]["name"], None)
        else:
            state[obj["metadata"]["name"]] = obj
        if i < len(before):
            continue  # the watch's initial listing, in no particular order
        assert DENY in state, f"no default-deny after {ev['type']} {obj['metadata']['name']}"
    assert any(e["type"] == "DELETED" for e in events)


def test_label_removed_removes_the_policies(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    iso = make_iso(label)
    ns = make_ns({label: "dev"})
    eventually(lambda: holds_exactly(kubectl, iso, ns))
    kubectl("label", "namespace", ns, f"{label}-")
    eventually(lambda: kubectl.policies(ns) == {})


def test_excluded_and_terminating_namespaces_are_untouched(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    excluded = make_ns({label: "dev"})
    iso = make_iso(label, excludeNamespaces=[excluded])
    going = make_ns({label: "dev"})
    eventually(lambda: holds_exactly(kubectl, iso, going))
    assert kubectl.policies(excluded) == {}
    # Keep `going` Terminating with a finalizer, then take its policies away.
    kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "hold", "namespace": going, "finalizers": ["env.test/hold"]}}))  # fmt: skip
    kubectl("delete", "namespace", going, "--wait=false")
    eventually(lambda: kubectl.json("get", "namespace", going)["status"]["phase"] == "Terminating")
    eventually(
        lambda: kubectl.policies(going) == {}, timeout=60
    )  # the namespace controller's doing
    sentinel(kubectl, iso, label, make_ns, "prod")
    assert kubectl.policies(going) == {}
    assert kubectl.policies(excluded) == {}
    kubectl(
        "patch",
        "configmap",
        "hold",
        "-n",
        going,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )


def test_deleted_or_edited_managed_policy_is_restored(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    iso = make_iso(label)
    ns = make_ns({label: "dev"})
    before = eventually(lambda: holds_exactly(kubectl, iso, ns))
    kubectl("delete", "networkpolicy", DENY, "-n", ns)
    t0 = time.monotonic()
    after = eventually(lambda: holds_exactly(kubectl, iso, ns), timeout=10)
    assert after[DENY]["metadata"]["uid"] != before[DENY]["metadata"]["uid"]
    opened = {"spec": {"ingress": [{}]}}
    kubectl("patch", "networkpolicy", SAME, "-n", ns, "--type=merge", "-p", json.dumps(opened))
    eventually(lambda: holds_exactly(kubectl, iso, ns), timeout=10)
    assert time.monotonic() - t0 < 20


def test_a_policy_not_made_by_the_operator_is_never_touched(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    ns = make_ns({label: "dev"})
    kubectl.apply(json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                              "metadata": {"name": "envisolation-hand-written", "namespace": ns},
                              "spec": {"podSelector": {}, "ingress": [{}]}}))  # fmt: skip
    rv = kubectl.json("get", "networkpolicy", "envisolation-hand-written", "-n", ns)["metadata"][
        "resourceVersion"
    ]
    iso = make_iso(label)
    eventually(lambda: holds_exactly(kubectl, iso, ns))
    kubectl("label", "namespace", ns, f"{label}-")
    eventually(lambda: set(kubectl.policies(ns)) == {"envisolation-hand-written"})
    got = kubectl.json("get", "networkpolicy", "envisolation-hand-written", "-n", ns)
    assert got["metadata"]["resourceVersion"] == rv


def test_cr_spec_change_is_followed_by_every_namespace(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    iso = make_iso(label)
    namespaces = [make_ns({label: seg}) for seg in ("dev", "dev", "prod")]
    for ns in namespaces:
        eventually(lambda ns=ns: holds_exactly(kubectl, iso, ns))
    rule = {"name": "metrics", "egress": [{"ports": [{"port": 9090}]}]}
    kubectl(
        "patch",
        "enviso",
        iso,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"allow": [rule], "sameSegment": "Deny"}}),
    )
    for ns in namespaces:
        live = eventually(lambda ns=ns: holds_exactly(kubectl, iso, ns))
        assert "envisolation-allow-metrics" in live
        assert SAME not in live
    eventually(lambda: ready(kubectl, iso))


def test_audit_writes_nothing_and_status_says_what_enforce_would_do(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    iso = make_iso(label, segments=[{"name": "dev", "enforcement": "Audit"}])
    ns = make_ns({label: "dev"})

    def reported() -> dict[str, Any]:
        seg = (kubectl.json("get", "enviso", iso).get("status") or {}).get("segments", [{}])[0]
        return seg if seg.get("namespaces") == 1 else {}

    seg = eventually(reported)
    assert seg["enforcement"] == "Audit"
    assert seg["wouldApply"] == 3
    assert kubectl.policies(ns) == {}
    eventually(lambda: ready(kubectl, iso))


def test_off_removes_the_segments_policies(kubectl: Kubectl, make_iso, make_ns, label: str) -> None:
    iso = make_iso(label)
    ns = make_ns({label: "dev"})
    eventually(lambda: holds_exactly(kubectl, iso, ns))
    patch = {"spec": {"segments": [{"name": "dev", "enforcement": "Off"}, {"name": "prod"}]}}
    kubectl("patch", "enviso", iso, "--type=merge", "-p", json.dumps(patch))
    eventually(lambda: kubectl.policies(ns) == {})


def test_a_namespace_claimed_twice_keeps_only_the_older_default_deny(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    other = f"{label}-b"
    older = make_iso(label, isolate=["Ingress"])
    time.sleep(1.1)  # creationTimestamp has a resolution of one second
    newer = make_iso(other)
    ns = make_ns({label: "dev", other: "dev"})

    def deny_only() -> bool:
        live = kubectl.policies(ns)
        return (
            set(live) == {DENY}
            and live[DENY]["metadata"]["labels"]["envisolation.io/isolation"] == older
        )

    eventually(deny_only)
    assert kubectl.json("get", "networkpolicy", DENY, "-n", ns)["spec"]["policyTypes"] == [
        "Ingress"
    ]
    for iso in (older, newer):
        cond = eventually(
            lambda iso=iso: (
                condition(kubectl, iso, "Conflict").get("status") == "True"
                and condition(kubectl, iso, "Conflict")
            )
        )
        assert ns in cond["message"]
        conflicts = kubectl.json("get", "enviso", iso)["status"]["conflicts"]
        assert {"namespace": ns, "isolations": [older, newer], "owner": older} in conflicts

    def namespace_event() -> bool:
        events = kubectl.json(
            "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={ns}"
        )
        return any(
            e["reason"] == "Conflict" and older in e["message"] and newer in e["message"]
            for e in events["items"]
        )

    eventually(namespace_event)
    kubectl("label", "namespace", ns, f"{other}-")
    eventually(lambda: holds_exactly(kubectl, older, ns))
    eventually(lambda: condition(kubectl, newer, "Conflict").get("status") == "False")


def test_cr_deleted_with_orphan_leaves_policies_and_no_finalizer(
    kubectl: Kubectl, operator: Any, make_iso, make_ns, label: str
) -> None:
    iso = make_iso(label)
    ns = make_ns({label: "dev"})
    live = eventually(lambda: holds_exactly(kubectl, iso, ns))
    assert not kubectl.json("get", "enviso", iso)["metadata"].get("finalizers")
    kubectl("delete", "enviso", iso, "--timeout=10s")
    eventually(lambda: isolation_forgotten(operator, iso))
    assert {n: p["metadata"]["uid"] for n, p in kubectl.policies(ns).items()} == {
        n: p["metadata"]["uid"] for n, p in live.items()
    }


def test_cr_deleted_with_delete_removes_every_policy(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    iso = make_iso(label, deletionPolicy="Delete")
    namespaces = [make_ns({label: "dev"}), make_ns({label: "prod"})]
    for ns in namespaces:
        eventually(lambda ns=ns: holds_exactly(kubectl, iso, ns))
    eventually(
        lambda: (
            "envisolation.io/finalizer"
            in kubectl.json("get", "enviso", iso)["metadata"].get("finalizers", [])
        )
    )
    kubectl("delete", "enviso", iso, "--timeout=60s")
    for ns in namespaces:
        assert kubectl.policies(ns) == {}


def test_operator_restart_on_an_unchanged_cluster_writes_nothing(
    kubectl: Kubectl, operator: Operator, make_iso, make_ns, label: str
) -> None:
    iso = make_iso(label)
    namespaces = [make_ns({label: seg}) for seg in ("dev", "prod", "prod")]
    for ns in namespaces:
        eventually(lambda ns=ns: holds_exactly(kubectl, iso, ns))
    eventually(lambda: ready(kubectl, iso))
    time.sleep(2)  # let the status settle before the baseline (not an absence check)
    rvs = {
        ns: {n: p["metadata"]["resourceVersion"] for n, p in kubectl.policies(ns).items()}
        for ns in namespaces
    }
    cr_rv = kubectl.json("get", "enviso", iso)["metadata"]["resourceVersion"]
    writes = kubectl.policy_writes()
    cr_writes = kubectl.metric_sum(
        "apiserver_request_total", resource="environmentisolations", verb="PATCH|APPLY|PUT"
    )
    operator.restart()
    eventually(
        lambda: operator.metric("envisolation_reconcile_duration_seconds_count") >= 1, timeout=30
    )
    # The signs that the restarted operator has done all it would do: its first pass (over
    # every namespace) ended, and the status flush after it has counted this isolation.
    eventually(lambda: not isolation_forgotten(operator, iso), timeout=30)
    # Namespaces of earlier tests are still being cleaned up (deletes); creates and updates
    # of NetworkPolicies, counted by the API server, must not move at all.
    assert kubectl.policy_writes() - writes == 0
    assert operator.metric("envisolation_policies_written_total") == 0
    assert (
        kubectl.metric_sum(
            "apiserver_request_total", resource="environmentisolations", verb="PATCH|APPLY|PUT"
        )
        == cr_writes
    )
    assert kubectl.json("get", "enviso", iso)["metadata"]["resourceVersion"] == cr_rv
    assert {
        ns: {n: p["metadata"]["resourceVersion"] for n, p in kubectl.policies(ns).items()}
        for ns in namespaces
    } == rvs


def test_namespaces_are_never_written_by_the_operator(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    iso = make_iso(label)
    ns = make_ns({label: "dev"})
    eventually(lambda: holds_exactly(kubectl, iso, ns))
    kubectl("label", "namespace", ns, f"{label}=prod", "--overwrite")
    eventually(lambda: holds_exactly(kubectl, iso, ns))
    meta = kubectl.json("get", "namespace", ns)["metadata"]
    assert {m["manager"] for m in meta["managedFields"]} <= {
        "kubectl-client-side-apply",
        "kubectl-label",
    }
    assert not meta.get("finalizers")
    assert not any(k.startswith(("envisolation.io", "kopf")) for k in meta.get("annotations", {}))


def test_an_invalid_cr_is_rejected_by_kubectl_apply_naming_the_field(kubectl: Kubectl) -> None:
    bad = {
        "apiVersion": "envisolation.io/v1alpha1",
        "kind": "EnvironmentIsolation",
        "metadata": {"name": "bad"},
        "spec": {
            "segments": [{"name": "dev"}, {"name": "dev"}],
            "allow": [
                {"name": "r", "ingress": [{"ports": [{"port": 90, "endPort": 80}], "from": [{}]}]}
            ],
        },
    }
    res = kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert res.returncode != 0
    assert 'spec.segments[1]: Duplicate value: {"name":"dev"}' in res.stderr
    bad["spec"]["segments"] = [{"name": "dev"}]
    res = kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert (
        "spec.allow[0].ingress[0].ports[0].endPort: Invalid value: endPort is less than port"
        in res.stderr
    )
    assert "spec.allow[0].ingress[0].from[0]: Invalid value: an empty peer" in res.stderr
    bad["spec"]["allow"] = [
        {"name": "r", "segments": ["qa"], "ingress": [{"from": [{"segment": "qa"}]}]}
    ]
    res = kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    # The message names the offending value and where it is, not only the rule.
    assert 'spec.allow[0].segments[0]: segment "qa" is not declared in spec.segments' in res.stderr
    assert (
        'spec.allow[0].ingress[0].from[0].segment: segment "qa" is not declared in spec.segments'
        in res.stderr
    )


def test_a_spec_the_operator_cannot_render_is_reported_and_changes_nothing(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    iso = make_iso(label)
    ns = make_ns({label: "dev"})
    live = eventually(lambda: holds_exactly(kubectl, iso, ns))
    contradiction = {
        "spec": {
            "segments": [{"name": "dev", "namespaceSelector": {"matchLabels": {label: "prod"}}}]
        }
    }
    kubectl("patch", "enviso", iso, "--type=merge", "-p", json.dumps(contradiction))
    cond = eventually(
        lambda: (
            condition(kubectl, iso, "Ready").get("reason") == "InvalidSpec"
            and condition(kubectl, iso, "Ready")
        )
    )
    assert cond["message"].startswith("spec.segments[0].namespaceSelector.matchLabels:")
    assert cond["status"] == "False"
    assert {n: p["metadata"]["resourceVersion"] for n, p in kubectl.policies(ns).items()} == {
        n: p["metadata"]["resourceVersion"] for n, p in live.items()
    }


def test_kubectl_get_shows_the_columns_filled(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    iso = make_iso(label)
    make_ns({label: "dev"})
    make_ns({label: "prod"})
    eventually(
        lambda: (
            ready(kubectl, iso) and kubectl.json("get", "enviso", iso)["status"]["namespaces"] == 2
        )
    )
    row = kubectl("get", "environmentisolations", iso).stdout.splitlines()[1].split()
    assert row[:6] == [iso, "Enforce", "dev,prod", "2", "6", "True"]


def test_policies_carry_nothing_copied_from_an_argocd_managed_cr(
    kubectl: Kubectl, make_ns, label: str, operator: Operator
) -> None:
    body = {
        "apiVersion": "envisolation.io/v1alpha1",
        "kind": "EnvironmentIsolation",
        "metadata": {
            "name": f"argo-{secrets.token_hex(3)}",
            "labels": {
                "app.kubernetes.io/instance": "environments",
                "argocd.argoproj.io/instance": "environments",
            },
            "annotations": {
                "argocd.argoproj.io/tracking-id": "environments:envisolation.io/EnvironmentIsolation:/x",
                "argocd.argoproj.io/sync-wave": "1",
            },
        },
        "spec": {"namespaceLabel": label, "segments": [{"name": "dev"}]},
    }
    kubectl(
        "apply",
        "--server-side",
        "--field-manager=argocd-controller",
        "-f",
        "-",
        input=json.dumps(body),
    )
    try:
        ns = make_ns({label: "dev"})
        live = eventually(lambda: holds_exactly(kubectl, body["metadata"]["name"], ns))
        for p in live.values():
            meta = p["metadata"]
            assert not any(
                "argocd" in k or k == "app.kubernetes.io/instance" for k in meta.get("labels", {})
            )
            assert not any("argocd" in k for k in meta.get("annotations", {}))
            assert not meta.get("ownerReferences")
    finally:
        kubectl("delete", "enviso", body["metadata"]["name"], "--wait=false")


def test_a_burst_of_namespace_events_is_coalesced_into_few_status_writes(
    kubectl: Kubectl, make_iso, make_ns, label: str
) -> None:
    iso = make_iso(label)
    first = make_ns({label: "dev"})
    eventually(lambda: ready(kubectl, iso))
    eventually(lambda: holds_exactly(kubectl, iso, first))

    def status_writes() -> float:
        return kubectl.metric_sum(
            "apiserver_request_total",
            resource="environmentisolations",
            subresource="status",
            verb="APPLY|PATCH|PUT",
        )

    before = status_writes()
    names = [f"burst-{secrets.token_hex(3)}-{i}" for i in range(60)]
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": {label: "dev"}}}
        for n in names
    ]
    kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    try:
        for n in names[:3] + names[-3:]:
            eventually(lambda n=n: holds_exactly(kubectl, iso, n), timeout=60)
        # 60 namespace events and ~240 policy events: a handful of status writes.
        eventually(
            lambda: (
                ready(kubectl, iso)
                and kubectl.json("get", "enviso", iso)["status"]["namespaces"] == 61
            )
        )
        writes = status_writes() - before
        assert 1 <= writes <= 15, writes
    finally:
        kubectl("delete", "namespace", *names, "--wait=false")
