"""Network namespaces, as the dataplane lab uses them: created with `ip`, entered per thread.

A socket belongs to the network namespace its creating thread was in when it was made, so
the lab's thread steps into a namespace (setns(2) on /run/netns/NAME), makes the socket and
steps back; the socket keeps working from the host. Only the calling thread moves.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    pass


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns: {os.strerror(err)}")


@contextmanager
def entered(name: str) -> Iterator[None]:
    """This thread inside network namespace `name` for the block (sockets made here stay)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            try:
                _setns(own)
            except NetnsError:  # a thread stuck in a lab namespace must not go on
                os._exit(70)
    finally:
        os.close(target)
        os.close(own)


def run(*argv: str, netns: str | None = None, check: bool = True) -> str:
    """A command on the host, or inside `netns` (`ip netns exec`)."""
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    res = subprocess.run(full, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise NetnsError(f"{' '.join(full)}: {res.stderr.strip() or res.returncode}")
    return res.stdout


def ip_batch(commands: list[str], netns: str | None = None) -> None:
    """Many `ip` commands in one process (`ip -batch`), stopping at the first failure."""
    if not commands:
        return
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    res = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True,
                         text=True, check=False)  # fmt: skip
    if res.returncode != 0:
        raise NetnsError(f"ip -batch ({netns or 'host'}): {res.stderr.strip()}")


def names() -> list[str]:
    out = run("ip", "netns", "list", check=False)
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def add(name: str) -> None:
    run("ip", "netns", "add", name)


def delete(name: str) -> None:
    run("ip", "netns", "delete", name, check=False)


def host_snapshot() -> dict[str, str]:
    """What the host's network looks like, minus counters and timestamps, to compare later."""

    def clean(text: str) -> str:
        lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
        return "\n".join(re.sub(r"\[\d+:\d+\]", "[]", ln) for ln in lines)

    links = run("ip", "-o", "link", "show", check=False)
    return {
        "netns": "\n".join(names()),
        "links": "\n".join(
            re.sub(r"\s+link/.*", "", ln.split(":", 2)[1].strip().split("@")[0])
            for ln in links.splitlines()
            if ":" in ln
        ),
        "routes": run("ip", "route", "show", "table", "all", check=False),
        "iptables": clean(run("iptables-save", check=False)),
        "ip6tables": clean(run("ip6tables-save", check=False)),
        "ipset": run("ipset", "list", "-n", check=False),
    }
