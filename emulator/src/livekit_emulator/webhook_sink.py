"""A webhook receiver for tests: an aiohttp server that records every request, verifies it
with livekit-api's ``WebhookReceiver`` and can be told to fail."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from livekit import api
from livekit.protocol import webhook


@dataclass
class Received:
    body: str
    headers: dict[str, str]
    event: webhook.WebhookEvent | None
    error: str = ""
    at: float = field(default_factory=lambda: asyncio.get_running_loop().time())


class WebhookSink:
    """``async with WebhookSink(api_key, api_secret) as sink:`` then ``sink.url``.

    ``fail_next(n, status)`` answers the next ``n`` requests with ``status``; ``answer_delay_s``
    makes it a slow receiver (each answer waits that long)."""

    def __init__(self, api_key: str, api_secret: str, path: str = "/webhook") -> None:
        self._receiver = api.WebhookReceiver(api.TokenVerifier(api_key, api_secret))
        self._path = path
        self.received: list[Received] = []
        self._fail: list[int] = []
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self.answer_delay_s = 0.0
        self.url = ""

    def fail_next(self, n: int, status: int = 503) -> None:
        self._fail.extend([status] * n)

    @property
    def events(self) -> list[webhook.WebhookEvent]:
        return [r.event for r in self.received if r.event is not None]

    def names(self, room: str | None = None) -> list[str]:
        return [e.event for e in self.events if room is None or e.room.name == room]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        headers = dict(request.headers)
        if self.answer_delay_s:
            await asyncio.sleep(self.answer_delay_s)
        if self._fail:
            status = self._fail.pop(0)
            self.received.append(Received(body, headers, None, error=f"answered {status}"))
            self._changed.set()
            return web.Response(status=status)
        try:
            event = self._receiver.receive(body, request.headers.get("Authorization", ""))
            self.received.append(Received(body, headers, event))
        except Exception as exc:
            self.received.append(Received(body, headers, None, error=str(exc)))
        self._changed.set()
        return web.Response(text="ok")

    async def wait_for(
        self, predicate: Callable[[list[webhook.WebhookEvent]], bool], within: float = 5.0
    ) -> list[webhook.WebhookEvent]:
        async with asyncio.timeout(within):
            while not predicate(self.events):
                self._changed.clear()
                await self._changed.wait()
        return self.events

    async def __aenter__(self) -> WebhookSink:
        app = web.Application()
        app.router.add_post(self._path, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}{self._path}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
