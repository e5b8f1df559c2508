"""The client's paged LIST against an HTTP server on loopback that pages as the API server
does (limit, continue): every object once and in order, the next page asked for while
this one is digested, no request left behind when the caller stops early, and an
expired continue token raised as Gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from envisolation.runtime import paging
from envisolation.runtime.api import Gone
from tests.unit.loopback import serve

TOTAL = 2500


@pytest.fixture
async def pager(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    """Serves TOTAL namespaces, `limit` a page; `log` records each request as it arrives
    ("page", offset) and the test's digest of each item ("item", index)."""
    state: dict[str, Any] = {"log": [], "expire_at": None, "served": 0}

    async def handler(request: web.Request) -> web.Response:
        limit = int(request.query["limit"])
        offset = int(request.query.get("continue") or 0)
        state["log"].append(("page", offset))
        if state["expire_at"] is not None and offset >= state["expire_at"]:
            return web.json_response(
                {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
                status=410,
            )
        end = min(TOTAL, offset + limit)
        items = [{"metadata": {"name": f"ns-{i:05}"}} for i in range(offset, end)]
        state["served"] += 1
        meta = {"resourceVersion": "42", **({"continue": str(end)} if end < TOTAL else {})}
        return web.json_response({"kind": "NamespaceList", "metadata": meta, "items": items})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces", handler)
    monkeypatch.setattr(paging, "LIST_PAGE", 1000)
    async with serve(app) as kube:
        state["kube"] = kube
        yield state


async def test_every_object_once_in_order_with_the_listing_version(pager: dict[str, Any]) -> None:
    names: list[str] = []
    rv = await pager["kube"].list_each("namespaces", lambda o: names.append(o["metadata"]["name"]))
    assert names == [f"ns-{i:05}" for i in range(TOTAL)]
    assert rv == "42"
    assert [e for e in pager["log"] if e[0] == "page"] == [("page", 0), ("page", 1000),
                                                           ("page", 2000)]  # fmt: skip


async def test_the_next_page_is_asked_for_while_this_one_is_digested(
    pager: dict[str, Any],
) -> None:
    log = pager["log"]
    await pager["kube"].list_each("namespaces", lambda o: log.append(("item", o)))
    order = [e[1] if e[0] == "page" else None for e in log]
    # The request for the page at 1000 reached the server before the last item of the
    # first page was digested (the digest yields every DIGEST_SLICE objects).
    first_page_done = max(i for i, e in enumerate(log) if e[0] == "item"
                          and e[1]["metadata"]["name"] == "ns-00999")  # fmt: skip
    assert order.index(1000) < first_page_done


async def test_a_caller_that_fails_leaves_no_request_behind(pager: dict[str, Any]) -> None:
    def each(obj: Any) -> None:
        if obj["metadata"]["name"] == "ns-00500":
            raise RuntimeError("the caller gave up")

    with pytest.raises(RuntimeError):
        await pager["kube"].list_each("namespaces", each)
    served = pager["served"]
    for _ in range(20):  # nothing more arrives: the prefetch was cancelled, not left running
        await asyncio.sleep(0.01)
    assert pager["served"] == served
    assert ("page", 2000) not in pager["log"]


async def test_an_expired_continue_token_is_gone(pager: dict[str, Any]) -> None:
    pager["expire_at"] = 2000
    with pytest.raises(Gone):
        await pager["kube"].list_each("namespaces", lambda _: None)
