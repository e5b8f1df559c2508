"""Shared by the benchmarks: wait until the API server serves the CRD; a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


def wait_established(kubectl: Callable[..., str], attempts: int = 30) -> None:
    """`kubectl wait` fails, not waits, until the new CRD has any condition: retry it."""
    for attempt in range(attempts):
        try:
            kubectl("wait", "--for=condition=established", "--timeout=30s",
                    "crd/environmentisolations.envisolation.io")  # fmt: skip
            return
        except subprocess.CalledProcessError:
            if attempt == attempts - 1:
                raise
            time.sleep(1)


def free_port() -> int:
    """A free TCP port on loopback, for a server of the bench's own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
