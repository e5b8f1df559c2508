"""Hands freed heap back to the OS after a large pass (glibc keeps it otherwise)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from typing import Any

LARGE_BATCH = 200  # namespaces in a pass worth trimming after
MIN_INTERVAL_SECONDS = 30.0  # a full GC costs time with a large heap


def _load_libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only; musl has none
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def release_memory() -> None:
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class MemoryTrim:
    def __init__(self) -> None:
        self._last = 0.0

    def after_pass(self, batch_size: int) -> None:
        """Trim after a pass over `batch_size` namespaces, at most every 30 s."""
        if batch_size >= LARGE_BATCH and time.monotonic() - self._last > MIN_INTERVAL_SECONDS:
            self._last = time.monotonic()
            release_memory()
