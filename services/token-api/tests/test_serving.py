"""token_api.serving: writes of one loop iteration leave together, in order; closing sends
what was gathered; served over real sockets, answers arrive whole one after another."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from token_api.serving import CoalescingTransport
from token_api.testing import AUTH


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_of_one_iteration_leave_in_one_write_in_order() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 201 Created\r\n\r\n")
    transport.write(bytearray(b"{}"))
    transport.write(b"")
    assert inner.writes == [] and transport.get_write_buffer_size() == 26
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 201 Created\r\n\r\n{}"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert inner.writes[-1] == b"next" and len(inner.writes) == 2


async def test_close_sends_what_was_gathered_first() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert inner.writes == [b"last words"] and inner.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert inner.writes == [b"last words"]


async def test_abort_drops_what_was_gathered() -> None:
    inner = RecordingTransport()
    inner.abort = lambda: setattr(inner, "closed", True)  # type: ignore[method-assign]
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"never sent")
    transport.abort()
    await asyncio.sleep(0)
    assert inner.writes == [] and inner.closed


async def test_served_answers_arrive_whole_one_after_another(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        for n in range(5):
            response = await http.post("/v1/sessions", json={"identity": f"user-{n}"}, headers=AUTH)
            assert response.status_code == 201, response.text
            assert response.json()["session"]["identity"] == f"user-{n}"
            assert int(response.headers["content-length"]) == len(response.content)
        problem = await http.post("/v1/sessions", json={"room": ""}, headers=AUTH)
        assert problem.status_code == 422
        assert problem.headers["content-type"].startswith("application/problem+json")
        health = await http.get("/healthz")
        assert health.status_code == 200
