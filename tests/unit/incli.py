"""The `envisolation` command run inside the test process (`main(argv)`), so that what it
runs is the code under test itself: a mutation of it (make mutate) is seen, as it is not
in a child process. A subprocess is kept only where a test needs its own environment."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Iterator

from envisolation.cli import main


@contextlib.contextmanager
def _path(path: str | None) -> Iterator[None]:
    old = os.environ.get("PATH")
    if path is not None:
        os.environ["PATH"] = path
    try:
        yield
    finally:
        if path is not None and old is not None:
            os.environ["PATH"] = old


def run_bytes(*args: str, path: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """Exit code, stdout and stderr as bytes (pictures are binary)."""
    raw, err = io.BytesIO(), io.StringIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _path(path):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse: usage errors and --help
            code = e.code if isinstance(e.code, int) else 2
    out.flush()
    return subprocess.CompletedProcess(["envisolation", *args], code, raw.getvalue(),
                                       err.getvalue().encode())  # fmt: skip


def run(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    res = run_bytes(*args, path=path)
    return subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode(),
                                       res.stderr.decode())  # fmt: skip
