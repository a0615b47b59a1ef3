"""The worker's HTTP endpoints (port 8082): ``/healthz``, ``/readyz``, ``/metrics``, and
``/stats`` (capacity in use and the exact latest acceptance latencies, for benchmarks)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class HealthState:
    alive: bool
    registered: bool
    draining: bool
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.alive and self.registered and not self.draining


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        state: Callable[[], HealthState],
        render_metrics: Callable[[], bytes],
        stats: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._stats = stats or dict
        self._host = host
        self._port = port
        self._state = state
        self._render_metrics = render_metrics
        self._runner: web.AppRunner | None = None
        self.port = port

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/stats", self._stats_view)
        return app

    async def _healthz(self, _: web.Request) -> web.Response:
        state = self._state()
        body = {"status": "ok" if state.alive else "failed", "detail": state.detail}
        return web.json_response(body, status=200 if state.alive else 503)

    async def _readyz(self, _: web.Request) -> web.Response:
        state = self._state()
        body = {
            "ready": state.ready,
            "registered": state.registered,
            "draining": state.draining,
            "detail": state.detail,
        }
        return web.json_response(body, status=200 if state.ready else 503)

    async def _stats_view(self, _: web.Request) -> web.Response:
        return web.json_response(self._stats())

    async def _metrics(self, _: web.Request) -> web.Response:
        data = await asyncio.to_thread(self._render_metrics)
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        if server is not None and getattr(server, "sockets", None):
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
