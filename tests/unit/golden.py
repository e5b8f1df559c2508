"""Golden cases: tests/golden/<case>/input.yaml -> expected.yaml (+ plan.yaml).

input.yaml holds EnvironmentIsolations, Namespaces and (optionally) the live managed
NetworkPolicies; options.yaml may set as_enforce and operator_namespace.
expected.yaml is exactly what `envisolation render` prints; plan.yaml, written when the
input has live policies, lists the ordered writes the operator would make; verify.txt,
verify.dot and verify.json are what `envisolation verify` (-o text|dot|json) prints of the cluster once
the operator has converged: the input with the rendered policies in place of its managed
ones (other NetworkPolicies, and the pods and workloads, as they are).
Regenerate with `make golden` after checking that the difference is intended.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from envisolation.analysis.graph import verify_dot
from envisolation.analysis.verify import format_text, reports_from_objects
from envisolation.cli import dump, render_all
from envisolation.policy.plan import LivePolicy, plan_namespace
from envisolation.policy.render import RenderContext, decide
from envisolation.spec.model import EnvironmentIsolation, NamespaceFacts

ROOT = Path(__file__).resolve().parent.parent / "golden"


def cases() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir() if (p / "input.yaml").exists())


def is_managed(doc: dict[str, object]) -> bool:
    labels = (doc.get("metadata") or {}).get("labels") or {}  # type: ignore[attr-defined]
    return bool(labels.get("envisolation.io/isolation"))


def compute(case: str) -> dict[str, str]:
    d = ROOT / case
    docs = [x for x in yaml.safe_load_all((d / "input.yaml").read_text()) if x]
    opts = yaml.safe_load((d / "options.yaml").read_text()) if (d / "options.yaml").exists() else {}
    ctx = RenderContext(
        operator_namespace=opts.get("operator_namespace", "envisolation-system"),
        as_enforce=bool(opts.get("as_enforce", False)),
    )
    isos = [EnvironmentIsolation.from_body(x) for x in docs if x["kind"] == "EnvironmentIsolation"]
    namespaces = [NamespaceFacts.from_body(x) for x in docs if x["kind"] == "Namespace"]
    live = [LivePolicy.from_body(x) for x in docs if x["kind"] == "NetworkPolicy"]
    rendered = render_all(isos, namespaces, ctx)
    out = {"expected.yaml": dump(rendered, "yaml")}
    converged = [
        *(x for x in docs if x["kind"] != "NetworkPolicy" or not is_managed(x)),
        *(dict(p) for p in rendered),
    ]
    reports = reports_from_objects(converged, ctx)
    out["verify.txt"] = format_text(reports)
    out["verify.dot"] = verify_dot(reports, isos)
    out["verify.json"] = json.dumps([r.as_dict() for r in reports], indent=2) + "\n"
    if live:
        known = {i.name for i in isos if not (i.deleting and i.deletion_policy == "Orphan")}
        managed = [p for p in live if p.isolation is not None]
        lines: list[str] = []
        for ns in sorted(namespaces, key=lambda n: n.name):
            decision = decide(ns, isos, ctx)
            plan = plan_namespace(decision, [p for p in managed if p.namespace == ns.name], known)
            lines.append(f"# {ns.name}: {decision.state.value}, owner {decision.owner}")
            lines.extend(f"- {a}" for a in plan.actions)
            if plan.would_apply or plan.would_delete:
                lines.append(f"# audit: would apply {plan.would_apply}, delete {plan.would_delete}")
        out["plan.yaml"] = "\n".join(lines) + "\n"
    return out
