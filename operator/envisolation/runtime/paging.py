"""A paged LIST that overlaps the API server's work with the caller's.

The next page is asked for before this one is handed out, so that the API server reads
and encodes it while the caller digests this one (a restart at 10,000 namespaces lists
about 170,000 objects; one page after the other, each side waited on the other), and
the digest yields to the event loop every DIGEST_SLICE objects so that the request
actually goes out meanwhile. At most two pages are held at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any

from envisolation.runtime.api import ApiError

LIST_PAGE = 500  # objects per LIST page: bounds the memory a listing takes at once
DIGEST_SLICE = 100  # objects of a page handed out between turns of the event loop

GetPage = Callable[[Mapping[str, str]], Awaitable[Mapping[str, Any]]]


async def _pages(get: GetPage, selector: Mapping[str, str]) -> AsyncGenerator[Mapping[str, Any]]:
    def fetch(token: str) -> asyncio.Future[Mapping[str, Any]]:
        params = {"limit": str(LIST_PAGE), **selector}
        if token:
            params["continue"] = token
        return asyncio.ensure_future(get(params))

    pending = fetch("")
    try:
        while True:
            page = await pending
            token = str((page.get("metadata") or {}).get("continue") or "")
            if token:
                pending = fetch(token)
            yield page
            if not token:
                return
    finally:
        if not pending.done():  # the caller stopped early (an error): no stray request
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, ApiError):
                await pending


async def list_each(
    get: GetPage, selector: Mapping[str, str], each: Callable[[Mapping[str, Any]], object]
) -> str:
    """Hand every object of a LIST to `each`, a page at a time; returns the listing's
    resourceVersion. A continue token that expired mid-listing raises Gone (from `get`)."""
    rv = ""
    async with contextlib.aclosing(_pages(get, selector)) as pages:
        async for page in pages:
            rv = str((page.get("metadata") or {}).get("resourceVersion", ""))
            for i, item in enumerate(page.get("items") or [], 1):
                each(item)
                if i % DIGEST_SLICE == 0:
                    await asyncio.sleep(0)
    return rv
