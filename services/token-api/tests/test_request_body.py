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
