"""An aiohttp app served on loopback with the operator's own client pointed at it: the
client's behaviour (throttling, paging) tested against real HTTP without a cluster."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from kubernetes import client

from envisolation.runtime import client as kube_client


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[kube_client.Kube]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{port}"
    kube = kube_client.Kube(cfg)
    try:
        yield kube
    finally:
        await kube.aclose()
        await runner.cleanup()
