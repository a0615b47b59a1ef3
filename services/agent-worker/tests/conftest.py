"""Fixtures for tests that run a real ``agent-worker`` process against the LiveKit emulator,
the Realtime stand-in and the real Redis."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest_asyncio
from livekit import api

from agent_worker.realtime_standin import RunningStandin, StandinConfig, running_standin
from agent_worker.testing import WorkerProcess, running_worker
from agentline.keys import Keys
from livekit_emulator.testing import RunningEmulator


@pytest_asyncio.fixture
async def standin() -> AsyncIterator[RunningStandin]:
    async with running_standin(StandinConfig(pace=0.0)) as s:
        yield s


@pytest_asyncio.fixture
async def start_worker(
    redis_url: str, keys: Keys, redis_client: Any
) -> AsyncIterator[Callable[..., AbstractAsyncContextManager[WorkerProcess]]]:
    """``async with start_worker(emu, openai_base_url=..., max_jobs=2) as worker`` (the
    ``redis_client`` fixture removes the test's keys afterwards)."""

    def start(emu: RunningEmulator, **kwargs: Any) -> AbstractAsyncContextManager[WorkerProcess]:
        return running_worker(
            emu.ws_url, emu.api_key, emu.api_secret,
            redis_url=redis_url, namespace=keys.namespace, **kwargs,
        )  # fmt: skip

    yield start


@pytest_asyncio.fixture
async def lk_api(livekit_emulator: RunningEmulator) -> AsyncIterator[api.LiveKitAPI]:
    async with contextlib.AsyncExitStack():
        client = api.LiveKitAPI(
            livekit_emulator.http_url, livekit_emulator.api_key, livekit_emulator.api_secret
        )
        try:
            yield client
        finally:
            await client.aclose()
