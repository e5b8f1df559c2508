"""`envisolation run | render` and `--version`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from envisolation import __version__
from envisolation.policy.render import RenderContext, decide
from envisolation.spec import constants as c
from envisolation.spec.kinds import PolicyDict
from envisolation.spec.model import EnvironmentIsolation, InvalidSpec, NamespaceFacts

EXIT_USAGE = 2


class InputError(Exception):
    """Bad input for an offline command: printed as `error: ...`, exit code 2."""


def _documents(path: str) -> Iterator[Mapping[str, Any]]:
    """Every object in a YAML/JSON file: multi-document streams and `List` kinds flattened."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror or e}") from e
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from e
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise InputError(f"{path}: expected Kubernetes objects, found {type(doc).__name__}")
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            yield from (i for i in doc["items"] if isinstance(i, Mapping))
        else:
            yield doc


def load_isolations(path: str) -> list[EnvironmentIsolation]:
    out = []
    for doc in _documents(path):
        if doc.get("kind") != c.KIND:
            continue
        try:
            out.append(EnvironmentIsolation.from_body(doc))
        except InvalidSpec as e:
            name = (doc.get("metadata") or {}).get("name", "?")
            raise InputError(f"{path}: EnvironmentIsolation {name}: {e}") from e
    if not out:
        raise InputError(f"{path}: no EnvironmentIsolation found")
    return out


def load_namespaces(path: str) -> list[NamespaceFacts]:
    out = []
    for i, doc in enumerate(_documents(path)):
        if doc.get("kind") not in ("Namespace", None):
            continue
        if not (doc.get("metadata") or {}).get("name"):
            raise InputError(f"{path}: object {i} has no metadata.name")
        out.append(NamespaceFacts.from_body(doc))
    return out


def render_all(
    isolations: Sequence[EnvironmentIsolation],
    namespaces: Sequence[NamespaceFacts],
    ctx: RenderContext,
) -> list[PolicyDict]:
    """What the operator would keep in the cluster, sorted by namespace then name."""
    out: list[PolicyDict] = []
    for ns in sorted(namespaces, key=lambda n: n.name):
        out.extend(decide(ns, isolations, ctx).desired)
    return out


def dump(policies: Sequence[PolicyDict], fmt: str) -> str:
    if fmt == "json":
        items = [dict(p) for p in policies]
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2) + "\n"
    return yaml.safe_dump_all(
        [dict(p) for p in policies], sort_keys=False, default_flow_style=False
    )


def cmd_render(args: argparse.Namespace) -> int:
    isolations = load_isolations(args.file)
    namespaces = load_namespaces(args.namespaces)
    ctx = RenderContext(operator_namespace=args.operator_namespace, as_enforce=args.as_enforce)
    sys.stdout.write(dump(render_all(isolations, namespaces, ctx), args.output))
    return 0


MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def read_dir(root: str) -> list[Mapping[str, Any]]:
    """Every object in every .yaml, .yml and .json file under `root`, recursively."""
    base = Path(root)
    if not base.exists():
        raise InputError(f"{root}: no such file or directory")
    files = (
        [base]
        if base.is_file()
        else sorted(p for p in base.rglob("*") if p.suffix in MANIFEST_SUFFIXES)
    )
    out: list[Mapping[str, Any]] = []
    for f in files:
        out.extend(d for d in _documents(str(f)) if d.get("kind"))
    return out


def cmd_reachability(args: argparse.Namespace) -> int:
    from envisolation.analysis import reachability as r

    try:
        cluster, notes = r.build(read_dir(args.dir))
    except InvalidSpec as e:
        raise InputError(str(e)) from e
    for note in sorted(set(notes)):
        print(f"note: {note}", file=sys.stderr)
    rows = [(str(x.src), str(x.dst), str(x.conns)) for x in r.connlist(cluster)]
    sys.stdout.write(format_rows(rows, args.output))
    return 0


def format_rows(rows: Sequence[tuple[str, str, str]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{"src": a, "dst": b, "conn": c} for a, b, c in rows], indent=2) + "\n"
    if fmt == "csv":
        return "".join(f"{a},{b},{c}\n" for a, b, c in [("src", "dst", "conn"), *rows])
    if fmt == "md":
        head = "| src | dst | conn |\n|-----|-----|------|\n"
        return head + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)
    return "".join(f"{a} => {b} : {c}\n" for a, b, c in rows)


def cmd_verify(args: argparse.Namespace) -> int:
    import asyncio

    from envisolation.analysis import verify

    if args.from_dir:
        objects = read_dir(args.from_dir)
    else:
        from envisolation.runtime.api import ApiError
        from envisolation.runtime.client import Kube

        async def fetch() -> list[Mapping[str, Any]]:
            kube = Kube()
            try:
                return await kube.list_for_verify()
            finally:
                await kube.aclose()

        try:
            objects = asyncio.run(fetch())
        except ApiError as e:
            raise InputError(f"reading the cluster failed: {e}") from e
        except Exception as e:  # no kubeconfig, unreachable server, ...
            raise InputError(f"cannot reach the cluster: {e}") from e
    ctx = RenderContext(operator_namespace=args.operator_namespace)
    try:
        reports = verify.reports_from_objects(objects, ctx)
    except InvalidSpec as e:
        raise InputError(str(e)) from e
    if not reports:
        raise InputError("no EnvironmentIsolation found")
    if args.output == "json":
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        sys.stdout.write(verify.format_text(reports))
    return 1 if any(r.exposures for r in reports) else 0


def cmd_run(args: argparse.Namespace) -> int:
    from envisolation.runtime.main import run_operator

    return run_operator(args)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="envisolation", description="Keeps a cluster's environments network-isolated."
    )
    ap.add_argument("--version", action="version", version=f"envisolation {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator (in-cluster config, else kubeconfig)")
    run.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", c.DEFAULT_OPERATOR_NAMESPACE),
        help="the operator's own namespace, always excluded (default: $POD_NAMESPACE or "
        f"{c.DEFAULT_OPERATOR_NAMESPACE})",
    )
    run.add_argument("--log-format", choices=["console", "json"], default="console")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.add_argument(
        "--resync",
        type=float,
        default=c.DEFAULT_RESYNC_SECONDS,
        metavar="SECONDS",
        help="re-check every namespace this often (default 600)",
    )
    run.add_argument(
        "--liveness",
        default="http://127.0.0.1:8081/healthz",
        metavar="URL",
        help="health endpoint for probes ('' disables; in a Pod use http://0.0.0.0:8081/healthz)",
    )
    election = run.add_argument_group(
        "leader election", "for two or more replicas: one leads and writes, the others stand by"
    )
    election.add_argument(
        "--leader-elect",
        action="store_true",
        help="hold a coordination.k8s.io Lease before writing (off by default)",
    )
    election.add_argument(
        "--lease-namespace",
        default="",
        metavar="NS",
        help="the Lease's namespace (default: the pod's own, else default)",
    )
    election.add_argument("--lease-name", default="envisolation", metavar="NAME")
    election.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long others wait on a silent leader (default 15)",
    )
    election.add_argument(
        "--renew-deadline",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a leader that has not renewed for this long stops writing and "
        "exits; less than the lease duration (default 10)",
    )
    election.add_argument(
        "--retry-period",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to renew, or to try to acquire (default 2)",
    )
    run.add_argument(
        "--metrics-bind",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="where /metrics and /readyz listen ('' disables)",
    )
    run.set_defaults(func=cmd_run)

    render = sub.add_parser("render", help="print the NetworkPolicies the operator would keep")
    render.add_argument(
        "-f", "--file", required=True, help="EnvironmentIsolation YAML ('-': stdin)"
    )
    render.add_argument(
        "--namespaces",
        required=True,
        help="namespaces as `kubectl get ns -o yaml` prints them, or a multi-document stream",
    )
    render.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    render.add_argument(
        "--as-enforce", action="store_true", help="preview Audit and Off segments as Enforce"
    )
    render.add_argument("--operator-namespace", default=c.DEFAULT_OPERATOR_NAMESPACE)
    render.set_defaults(func=cmd_render)

    reach = sub.add_parser(
        "reachability", help="list who may connect to whom under the NetworkPolicies in DIR"
    )
    reach.add_argument(
        "dir", metavar="DIR", help="a directory (recursively) or a file of manifests"
    )
    reach.add_argument("-o", "--output", choices=["txt", "json", "csv", "md"], default="txt")
    reach.set_defaults(func=cmd_reachability)

    ver = sub.add_parser(
        "verify",
        help="check that every cross-segment path is declared (exit 0), or list exposures (exit 1)",
    )
    ver.add_argument("--from", dest="from_dir", metavar="DIR", help="offline: manifests under DIR")
    ver.add_argument("-o", "--output", choices=["txt", "json"], default="txt")
    ver.add_argument("--operator-namespace", default=c.DEFAULT_OPERATOR_NAMESPACE)
    ver.set_defaults(func=cmd_verify)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
