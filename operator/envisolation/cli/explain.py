"""`envisolation explain SRC DST [--port PROTO/PORT] [--from DIR]`: why one flow is allowed.

Offline with `--from DIR` (manifests, `kubectl get` output), else against the current
kubeconfig (EnvironmentIsolations, Namespaces, Pods, NetworkPolicies). Exit 0 allowed,
1 denied, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from envisolation.cli.inputs import InputError, live_objects, read_dir
from envisolation.policy.render import RenderContext
from envisolation.spec import constants as c
from envisolation.spec.model import EnvironmentIsolation, InvalidSpec, NamespaceFacts


def cmd_explain(args: argparse.Namespace) -> int:
    from envisolation.analysis import explain as ex
    from envisolation.analysis import reachability as r

    objects = read_dir(args.from_dir) if args.from_dir else live_objects(pods=True)
    try:
        cluster, _ = r.build(objects)
        src = ex.resolve(args.src, cluster, objects)
        dst = ex.resolve(args.dst, cluster, objects)
        probe = ex.parse_port(args.port) if args.port else None
        isolations = [EnvironmentIsolation.from_body(o) for o in objects if o.get("kind") == c.KIND]
        namespaces = {
            str(o["metadata"]["name"]): NamespaceFacts.from_body(o)
            for o in objects
            if o.get("kind") == "Namespace"
        }
    except InvalidSpec as e:
        raise InputError(str(e)) from e
    ctx = RenderContext(operator_namespace=args.operator_namespace)
    result = ex.explain(cluster, src, dst, probe, isolations, namespaces, ctx)
    sys.stdout.write(result.text())
    return 0 if result.allowed else 1


def add_parser(sub: Any) -> None:
    exp = sub.add_parser(
        "explain",
        help="why one flow is allowed or denied (exit 0 allowed, 1 denied, 2 bad input)",
    )
    exp.add_argument("src", metavar="SRC", help="NAMESPACE/WORKLOAD, NAMESPACE/POD or an IP")
    exp.add_argument("dst", metavar="DST", help="NAMESPACE/WORKLOAD, NAMESPACE/POD or an IP")
    exp.add_argument("--port", help="PROTO/PORT, e.g. TCP/80 (default: every port)")
    exp.add_argument("--from", dest="from_dir", metavar="DIR", help="offline: manifests under DIR")
    exp.add_argument("--operator-namespace", default=c.DEFAULT_OPERATOR_NAMESPACE)
    exp.set_defaults(func=cmd_explain)
