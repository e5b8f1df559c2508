"""The operator process: leader election settings, the metrics and readiness port, Kopf."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _ready(memo: Any) -> bool:
    controller = memo.get("controller")
    return bool(controller is not None and controller.ready)


def run_operator(args: argparse.Namespace) -> int:
    """`envisolation run`: leader settings, the metrics and readiness port, then Kopf."""
    import asyncio

    import kopf

    from envisolation.runtime import handlers, logs
    from envisolation.runtime.leader import LeaseSettings, default_identity, default_namespace

    logs.configure(args.log_format, "DEBUG" if args.verbose else "INFO")
    lease = None
    if args.leader_elect:
        try:
            lease = LeaseSettings(
                namespace=args.lease_namespace or default_namespace(),
                name=args.lease_name,
                identity=default_identity(),
                lease_duration=args.lease_duration,
                renew_deadline=args.renew_deadline,
                retry_period=args.retry_period,
            )
        except ValueError as e:
            print(f"envisolation run: {e}", file=sys.stderr)
            return 2
    from envisolation.analysis.exposure import WidePrefixes

    try:
        wide = WidePrefixes(args.wide_ipv4_prefix, args.wide_ipv6_prefix)
    except ValueError as e:
        print(f"envisolation run: {e}", file=sys.stderr)
        return 2
    memo = kopf.Memo(operator_namespace=args.namespace, resync_seconds=args.resync,
                     lease=lease, wide_prefixes=wide)  # fmt: skip
    if args.metrics_bind:
        from envisolation.runtime.serve import serve

        host, _, port = args.metrics_bind.rpartition(":")
        serve(
            host or "0.0.0.0",
            int(port),
            lambda: bool(getattr(memo.get("controller"), "ready", False)),
        )
    assert handlers.configure is not None  # registers the handlers on import
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=True,
            liveness_endpoint=args.liveness or None,
            memo=memo,
        )
    )
    return 0
