"""The `envisolation` command: `run`, `render`, `verify`, `reachability`, `explain`, `--version`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import yaml

from envisolation import __version__
from envisolation.cli import explain
from envisolation.cli.inputs import (
    InputError,
    live_objects,
    load_isolations,
    load_namespaces,
    read_dir,
    read_files,
)
from envisolation.policy.render import RenderContext, decide
from envisolation.spec import constants as c
from envisolation.spec.kinds import PolicyDict
from envisolation.spec.model import EnvironmentIsolation, InvalidSpec, NamespaceFacts

EXIT_USAGE = 2


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


def cmd_reachability(args: argparse.Namespace) -> int:
    from envisolation.analysis import reachability as r
    from envisolation.analysis.netpol import WORKLOAD_KINDS

    files = read_files(args.dir)
    read = ("Namespace", "NetworkPolicy", *WORKLOAD_KINDS)
    for f, objs in files:  # never read a file as empty without saying so
        if not any(o.get("kind") in read for o in objs):
            print(f"warning: {f}: no Namespace, NetworkPolicy, Pod or workload found",
                  file=sys.stderr)  # fmt: skip
    try:
        cluster, notes = r.build(obj for _, objs in files for obj in objs)
    except InvalidSpec as e:
        raise InputError(str(e)) from e
    for note in sorted(set(notes)):
        print(f"note: {note}", file=sys.stderr)
    if not cluster.workloads:
        raise InputError(f"{args.dir}: no Pod or workload found, nothing to analyse")
    rows = [(str(x.src), str(x.dst), str(x.conns)) for x in r.connlist(cluster)]
    if args.output in PICTURES:
        from envisolation.analysis.graph import reachability_dot

        picture(reachability_dot(rows), args.output)
    else:
        sys.stdout.write(format_rows(rows, args.output))
    return 0


PICTURES = ("dot", "svg", "png")
GRAPHVIZ_MISSING = (
    "-o {fmt} needs Graphviz's `dot` on PATH: install Graphviz (Debian/Ubuntu: "
    "apt-get install graphviz; Fedora: dnf install graphviz; macOS: brew install graphviz), "
    "or use -o dot and render it elsewhere"
)


def picture(dot: str, fmt: str) -> None:
    """DOT text as is, or rendered by Graphviz (`dot -Tsvg|png`) to stdout."""
    if fmt == "dot":
        sys.stdout.write(dot)
        return
    import shutil
    import subprocess

    exe = shutil.which("dot")
    if exe is None:
        raise InputError(GRAPHVIZ_MISSING.format(fmt=fmt))
    res = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, check=False)
    if res.returncode != 0:
        raise InputError(f"Graphviz failed: {res.stderr.decode(errors='replace').strip()}")
    sys.stdout.buffer.write(res.stdout)
    sys.stdout.flush()


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
    from envisolation.analysis import verify
    from envisolation.analysis.exposure import WidePrefixes

    try:
        wide = WidePrefixes(args.wide_ipv4_prefix, args.wide_ipv6_prefix)
    except ValueError as e:
        raise InputError(str(e)) from e
    objects = read_dir(args.from_dir) if args.from_dir else live_objects()
    ctx = RenderContext(operator_namespace=args.operator_namespace)
    try:
        reports = verify.reports_from_objects(objects, ctx, wide)
    except InvalidSpec as e:
        raise InputError(str(e)) from e
    if not reports:
        raise InputError("no EnvironmentIsolation found")
    if args.output == "json":
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    elif args.output in PICTURES:
        from envisolation.analysis.graph import verify_dot

        isolations = [EnvironmentIsolation.from_body(o) for o in objects if o.get("kind") == c.KIND]
        picture(verify_dot(reports, isolations), args.output)
    else:
        sys.stdout.write(verify.format_text(reports))
    return 1 if any(r.exposures for r in reports) else 0


def cmd_run(args: argparse.Namespace) -> int:
    from envisolation.runtime.main import run_operator

    return run_operator(args)


def wide_prefix_options(p: argparse.ArgumentParser) -> None:
    """The widths from which an ipBlock is a possible exposure (analysis/exposure.py)."""
    from envisolation.analysis.exposure import DEFAULT_WIDE

    g = p.add_argument_group(
        "wide ipBlocks", "an ipBlock this wide or wider in a managed namespace may cover pod "
        "addresses and is reported as a possible exposure",
    )  # fmt: skip
    g.add_argument("--wide-ipv4-prefix", type=int, default=DEFAULT_WIDE.ipv4, metavar="LEN",
                   help=f"IPv4 prefix length, 0-32 (default {DEFAULT_WIDE.ipv4})")  # fmt: skip
    g.add_argument("--wide-ipv6-prefix", type=int, default=DEFAULT_WIDE.ipv6, metavar="LEN",
                   help=f"IPv6 prefix length, 0-128 (default {DEFAULT_WIDE.ipv6})")  # fmt: skip


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
    wide_prefix_options(run)
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
    reach.add_argument(
        "-o", "--output", choices=["txt", "json", "csv", "md", *PICTURES], default="txt",
        help="dot: a Graphviz graph; svg, png: rendered by Graphviz's `dot`",
    )  # fmt: skip
    reach.set_defaults(func=cmd_reachability)

    ver = sub.add_parser(
        "verify",
        help="check that every cross-segment path is declared (exit 0), or list exposures (exit 1)",
    )
    ver.add_argument("--from", dest="from_dir", metavar="DIR", help="offline: manifests under DIR")
    ver.add_argument(
        "-o", "--output", choices=["txt", "json", *PICTURES], default="txt",
        help="dot: segments and allowed paths as a Graphviz graph; svg, png: rendered by `dot`",
    )  # fmt: skip
    ver.add_argument("--operator-namespace", default=c.DEFAULT_OPERATOR_NAMESPACE)
    wide_prefix_options(ver)
    ver.set_defaults(func=cmd_verify)
    explain.add_parser(sub)
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
