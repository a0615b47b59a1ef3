"""Running dispatcher processes in tests and benchmarks (not used in production): the
environment for one, readiness and metrics of a running one, and a webhook balancer that does
what a Kubernetes Service does for LiveKit's webhooks."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from agentline.keys import Keys


def dispatcher_env(
    redis_url: str,
    keys: Keys,
    livekit_url: str,
    api_key: str,
    secret: str,
    port: int,
    name: str,
    **settings: Any,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCHER_", "LIVEKIT_"))}
    env.update(
        REDIS_URL=redis_url,
        AGENTLINE_REDIS_NAMESPACE=keys.namespace,
        LIVEKIT_URL=livekit_url,
        LIVEKIT_API_KEY=api_key,
        LIVEKIT_API_SECRET=secret,
        DISPATCHER_PORT=str(port),
        DISPATCHER_HOST="127.0.0.1",
        DISPATCHER_CONSUMER_NAME=name,
    )
    env.setdefault("LOG_LEVEL", "WARNING")
    for key, value in settings.items():
        env[f"DISPATCHER_{key.upper()}"] = str(value)
    return env


def histogram_buckets(text: str, name: str, labels: str = "") -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram in a metrics exposition."""
    out: list[tuple[float, float]] = []
    prefix = f"{name}_bucket{{"
    for line in text.splitlines():
        if line.startswith(prefix) and labels in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    return sorted(out)


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Like PromQL's histogram_quantile: linear inside the bucket holding the rank."""
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * (
                (rank - lower_count) / span if span else 1
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def bucket_delta(
    after: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    counts = dict(before)
    return [(bound, count - counts.get(bound, 0.0)) for bound, count in after]


@dataclass
class DispatcherProcess:
    process: asyncio.subprocess.Process
    port: int
    name: str

    async def wait_ready(self, within: float = 40.0) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise RuntimeError(f"dispatcher {self.name} exited {self.process.returncode}")
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"dispatcher {self.name} not ready")

    async def metrics(self) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}/metrics") as response,
        ):
            return await response.text()

    async def metric(self, name: str, labels: str = "") -> float:
        """The sum of a metric's samples (matching ``labels`` text, if given)."""
        total = 0.0
        for line in (await self.metrics()).splitlines():
            if line.startswith(name) and (line[len(name)] in " {") and labels in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


async def start_dispatcher(env: dict[str, str], port: int, name: str) -> DispatcherProcess:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher.main",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return DispatcherProcess(process, port, name)


class WebhookBalancer:
    """What a Kubernetes Service does for LiveKit's webhooks: one URL, forwarded to a live
    replica (a refused connection tries the next one)."""

    def __init__(self, backend_ports: list[int]) -> None:
        self.backends = backend_ports
        self.port = 0
        self._next = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/livekit"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/webhooks/livekit", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type")
        }
        assert self._session is not None
        for _ in range(len(self.backends)):
            port = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                async with self._session.post(
                    f"http://127.0.0.1:{port}/webhooks/livekit", data=body, headers=headers
                ) as response:
                    return web.Response(status=response.status, body=await response.read())
            except aiohttp.ClientConnectionError:
                continue
        return web.Response(status=503)
