"""Test harness: the LiveKit emulator (in-process) + a dispatcher (in-process) on real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from agentline.ids import new_dispatch_id
from agentline.keys import Keys
from agentline.lifecycle import DispatchState
from agentline.registry import WorkerRegistry
from agentline.schema import DispatchKind, DispatchRecord, DispatchRequest, WorkerInfo
from agentline.settings import DispatcherSettings
from agentline.store import DispatchStore
from dispatcher.service import DispatcherService
from livekit_emulator.testing import RunningEmulator, running_emulator

AGENT = "travel-assistant"
SECRET = "test-secret-0123456789abcdef0123456789abcdef"

FAST: dict[str, Any] = {
    "assign_timeout_seconds": 1.0,
    "join_timeout_seconds": 1.0,
    "audio_timeout_seconds": 1.0,
    "poll_interval_seconds": 0.25,
    "retry_backoff_seconds": 0.05,
    "livekit_timeout_seconds": 1.0,
    "claim_idle_seconds": 1.0,
    "drain_seconds": 1.0,
    "max_attempts": 3,
    "registry_wait_seconds": 1.0,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dispatcher_settings(
    redis_url: str, keys: Keys, livekit_url: str, port: int, secret: str = SECRET, **overrides: Any
) -> DispatcherSettings:
    values: dict[str, Any] = {
        **FAST,
        "redis_url": redis_url,
        "redis_namespace": keys.namespace,
        "livekit_url": livekit_url,
        "livekit_api_key": "devkey",
        "livekit_api_secret": secret,
        "webhook_api_key": "devkey",
        "webhook_api_secret": SECRET,
        "host": "127.0.0.1",
        "port": port,
        "consumer_name": f"test-{uuid.uuid4().hex[:6]}",
        **overrides,
    }
    return DispatcherSettings(**values)


@dataclass
class Harness:
    redis: Redis
    keys: Keys
    store: DispatchStore
    emu: RunningEmulator
    dispatcher: DispatcherService
    port: int

    async def submit(
        self,
        room: str | None = None,
        agent_name: str = AGENT,
        kind: DispatchKind = DispatchKind.SESSION,
    ) -> str:
        dispatch_id = new_dispatch_id()
        request = DispatchRequest(
            dispatch_id=dispatch_id,
            room=room or f"room-{uuid.uuid4().hex[:8]}",
            agent_name=agent_name,
            kind=kind,
            metadata='{"caller": "test"}',
            caller_identity="caller",
            requested_at_ms=int(time.time() * 1000),
        )
        await self.store.create(request)
        return dispatch_id

    async def wait_state(
        self, dispatch_id: str, states: Iterable[DispatchState], within: float = 10.0
    ) -> DispatchRecord:
        wanted = set(states)
        deadline = time.monotonic() + within
        record = None
        while time.monotonic() < deadline:
            record = await self.store.get(dispatch_id)
            if record is not None and record.state in wanted:
                return record
            await asyncio.sleep(0.02)
        raise AssertionError(f"{dispatch_id} never reached {wanted}: {record}")

    async def wait_terminal(self, dispatch_id: str, within: float = 10.0) -> DispatchRecord:
        return await self.wait_state(
            dispatch_id,
            (DispatchState.FAILED, DispatchState.CANCELLED, DispatchState.ENDED),
            within,
        )

    async def wait_terminal_or_speaking(
        self, dispatch_id: str, within: float = 10.0
    ) -> DispatchRecord:
        return await self.wait_state(
            dispatch_id,
            (
                DispatchState.SPEAKING,
                DispatchState.FAILED,
                DispatchState.CANCELLED,
                DispatchState.ENDED,
            ),
            within,
        )

    async def states_seen(self, dispatch_id: str) -> list[str]:
        return [event.state.value for event in await self.store.events(dispatch_id)]


async def register_worker(
    redis: Redis, keys: Keys, agent_name: str = AGENT, capacity: int = 10
) -> None:
    """A registry entry for a simulated emulator worker (it exists; it just does not write to
    our registry itself)."""
    registry = WorkerRegistry(redis, keys, ttl_seconds=120)
    await registry.heartbeat(
        WorkerInfo(
            worker_id=f"sim-{uuid.uuid4().hex[:6]}", agent_name=agent_name, capacity=capacity
        )
    )


@contextlib.asynccontextmanager
async def harness(
    redis_client: Redis,
    redis_url: str,
    keys: Keys,
    workers: Iterable[tuple[str, int]] = ((AGENT, 10),),
    registered: bool = True,
    dispatcher_secret: str = SECRET,
    emulator_config: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    port = free_port()
    workers = list(workers)
    async with running_emulator(
        keys={"devkey": SECRET},
        webhook_urls=[f"http://127.0.0.1:{port}/webhooks/livekit"],
        simulated_workers=workers,
        departure_timeout=1.0,
        empty_timeout=30.0,
        **{"availability_timeout": 0.3, **(emulator_config or {})},
    ) as emu:
        if registered:
            for name, capacity in workers:
                await register_worker(redis_client, keys, name, capacity)
        settings = dispatcher_settings(
            redis_url, keys, emu.http_url, port, secret=dispatcher_secret, **overrides
        )
        service = DispatcherService(settings, CollectorRegistry())
        await service.start()
        try:
            yield Harness(redis_client, keys, DispatchStore(redis_client, keys), emu, service, port)
        finally:
            await service.stop(drain_seconds=1.0)
