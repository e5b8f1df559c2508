"""The metrics port: /metrics (Prometheus) and /readyz, in a thread of their own.

Readiness means "this instance's view of the cluster is warm", for the leader and the
standby alike: a Service in front of both keeps both as endpoints, so Prometheus scrapes
both (envisolation_leader says which one leads; their sum is 1 when all is well), and a
rolling update stops the old leader only once the new pod could take over from memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds are not worth a log line."""


def serve(host: str, port: int, ready: Callable[[], bool]) -> None:
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/readyz":
            ok = ready()
            start("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"the view is not loaded yet\n"]
        out: Iterable[bytes] = metrics(environ, start)
        return out

    server = make_server(host, port, app, _Server, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
