"""Run a real ``agent-worker`` process for tests (this package's and other services')::

async with running_worker(emu, redis_url=url, namespace=keys.namespace,
                          openai_base_url=standin.url, max_jobs=2) as worker:
    await dispatch(lk, "room-1", "dsp_1")
    events = await worker.wait_events(lambda evs: any(e.kind == "joined" for e in evs))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from livekit import api
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.redis_conn import make_client
from agentline.schema import WorkerEvent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    """A running ``python -m agent_worker`` and helpers to observe it."""

    def __init__(
        self, proc: asyncio.subprocess.Process, port: int, redis: Redis, keys: Keys
    ) -> None:
        self.proc = proc
        self.port = port
        self.redis = redis
        self.keys = keys
        self.output: list[str] = []
        self._reader = asyncio.create_task(self._read())
        self.http = aiohttp.ClientSession()

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.output.append(line.decode(errors="replace").rstrip())

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.output[-n:])

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(f"http://127.0.0.1:{self.port}{path}") as resp:
            body = await resp.text()
            with contextlib.suppress(json.JSONDecodeError):
                return resp.status, json.loads(body)
            return resp.status, body

    async def wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise AssertionError(f"worker exited early:\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                status, _ = await self.get("/readyz")
                if status == 200:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"worker not ready within {within}s:\n{self.log_tail()}")

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, text = await self.get("/metrics")
        assert status == 200
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    async def events(self) -> list[WorkerEvent]:
        rows: Any = await self.redis.xrange(self.keys.worker_events)
        return [WorkerEvent.from_fields(dict(fields)) for _, fields in rows or []]

    async def wait_events(
        self, predicate: Callable[[list[WorkerEvent]], bool], within: float = 15.0
    ) -> list[WorkerEvent]:
        deadline = time.monotonic() + within
        while True:
            events = await self.events()
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                got = [(e.kind.value, e.dispatch_id, e.stage, e.reason, e.error) for e in events]
                raise AssertionError(f"events not as expected: {got}\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    async def stop(self, within: float = 30.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), within)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.http.close()


@contextlib.asynccontextmanager
async def running_worker(
    livekit_url: str,
    livekit_api_key: str,
    livekit_api_secret: str,
    *,
    redis_url: str,
    namespace: str,
    openai_base_url: str,
    openai_api_key: str | None = None,
    # importing livekit-agents twice (worker, forkserver) takes ~10 s of CPU
    ready_within: float = 60.0,
    extra_env: dict[str, str] | None = None,
    **settings: str | int | float,
) -> AsyncIterator[WorkerProcess]:
    """Start ``python -m agent_worker`` with ``AGENT_WORKER_<NAME>`` set from ``settings``
    and wait until it is ready (registered with LiveKit)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENT_WORKER_"))}
    env.update(
        AGENTLINE_ENV="test", LOG_LEVEL="INFO", LOG_FORMAT="console",
        LIVEKIT_URL=livekit_url, LIVEKIT_API_KEY=livekit_api_key,
        LIVEKIT_API_SECRET=livekit_api_secret, REDIS_URL=redis_url,
        AGENTLINE_REDIS_NAMESPACE=namespace, AGENT_WORKER_PORT=str(port),
        AGENT_WORKER_HEARTBEAT_SECONDS="0.5", OPENAI_BASE_URL=openai_base_url,
    )  # fmt: skip
    if openai_api_key is not None:
        env["OPENAI_API_KEY"] = openai_api_key
    env.update({f"AGENT_WORKER_{k.upper()}": str(v) for k, v in settings.items()})
    env.update(extra_env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent_worker", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    redis = make_client(redis_url)
    worker = WorkerProcess(proc, port, redis, Keys(namespace=namespace))
    try:
        await worker.wait_ready(ready_within)
        yield worker
    finally:
        await worker.aclose()
        await redis.aclose()


async def dispatch(
    lk: api.LiveKitAPI, room: str, dispatch_id: str, agent_name: str = "travel-assistant"
) -> str:
    """CreateDispatch with the metadata the dispatcher writes."""
    meta = json.dumps({"dispatch_id": dispatch_id, "metadata": "{}", "trace": {}})
    req = api.CreateAgentDispatchRequest(agent_name=agent_name, room=room, metadata=meta)
    return str((await lk.agent_dispatch.create_dispatch(req)).id)
