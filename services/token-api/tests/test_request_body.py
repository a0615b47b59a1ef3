"""The POST routes' body read (token_api.requests.LeanBodyRequest) over real sockets:
chunked bodies without a Content-Length, joined or refused at the limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from token_api.testing import AUTH

JSON = {**AUTH, "Content-Type": "application/json"}


async def test_chunked_body_is_read_whole(live_url: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"identity": "chunked-user",'
        yield b' "name": "Chunked"}'

    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        response = await http.post("/v1/sessions", content=chunks(), headers=JSON)
    assert response.status_code == 201, response.text
    assert response.json()["session"]["identity"] == "chunked-user"


async def test_chunked_body_over_the_limit_is_413(live_url: str) -> None:
    """No Content-Length to refuse it early: the bytes received are counted (16 KiB limit)."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"metadata": "'
        for _ in range(10):
            yield b"x" * 4096
        yield b'"}'

    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        response = await http.post("/v1/sessions", content=chunks(), headers=JSON)
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_headers_are_the_ones_litestar_builds() -> None:
    from typing import Any

    from litestar.datastructures import Headers

    from token_api.requests import LeanBodyRequest

    raw = [
        (b"host", b"127.0.0.1"),
        (b"x-api-key", b"k\xe9y"),
        (b"traceparent", b"00-abc"),
        (b"accept", b"a"),
        (b"accept", b"b"),
    ]
    scope: dict[str, Any] = {"type": "http", "headers": raw, "state": {}}
    request = LeanBodyRequest(scope)  # type: ignore[arg-type]
    ours, theirs = request.headers, Headers(raw)
    assert type(ours) is type(theirs)
    assert list(ours.multi_items()) == list(theirs.multi_items())
    assert ours.getall("Accept") == ["a", "b"] and ours["X-API-KEY"] == "kéy"
    assert request.headers is ours, "cached in the connection's state"
    assert Headers.from_scope(scope) is ours, "…where Litestar's own readers find it"
