"""Dispatcher processes for the crash, drain and two-replica tests (see dispatcher.testing):
settings that make stages quick, the emulator behind a webhook balancer, and the stop that
every replica must survive (SIGTERM, drain, exit 0)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from harness import SECRET

from agentline.keys import Keys
from dispatcher.testing import DispatcherProcess, WebhookBalancer, dispatcher_env, start_dispatcher
from livekit_emulator.testing import RunningEmulator, running_emulator

__all__ = [
    "FAST",
    "DispatcherProcess",
    "WebhookBalancer",
    "dispatcher_env",
    "emulator_behind_balancer",
    "replica_env",
    "start_dispatcher",
    "stop_replicas",
]

# Stage timeouts, polling and take-over short enough for a test to see them happen.
FAST: dict[str, float] = {
    "assign_timeout_seconds": 2.0,
    "join_timeout_seconds": 2.0,
    "audio_timeout_seconds": 2.0,
    "poll_interval_seconds": 0.5,
    "retry_backoff_seconds": 0.05,
    "livekit_timeout_seconds": 1.0,
    "claim_idle_seconds": 1.0,
    "drain_seconds": 2.0,
}


@asynccontextmanager
async def emulator_behind_balancer(
    ports: list[int], **emulator_options: Any
) -> AsyncIterator[RunningEmulator]:
    """The emulator posting its webhooks to one URL that hands each to one of the replicas
    listening on ``ports`` (what the Kubernetes Service does)."""
    balancer = WebhookBalancer(ports)
    await balancer.start()
    try:
        async with running_emulator(
            keys={"devkey": SECRET}, webhook_urls=[balancer.url], **emulator_options
        ) as emu:
            yield emu
    finally:
        await balancer.stop()


def replica_env(
    redis_url: str, keys: Keys, emu: RunningEmulator, port: int, name: str, **settings: Any
) -> dict[str, str]:
    return dispatcher_env(redis_url, keys, emu.http_url, "devkey", SECRET, port, name, **settings)


async def stop_replicas(*replicas: DispatcherProcess) -> None:
    """SIGTERM every replica; each drains and exits 0."""
    for replica in replicas:
        replica.process.send_signal(signal.SIGTERM)
    for replica in replicas:
        assert await asyncio.wait_for(replica.process.wait(), 15) == 0
