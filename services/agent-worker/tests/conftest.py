"""Fixtures for tests that run a real ``agent-worker`` process against the LiveKit emulator,
the Realtime stand-in and Redis.

The worker's agents join rooms over WebRTC, which libwebrtc will not do on loopback: these
tests run inside a network namespace the test makes (``netns``), with the emulator on the
namespace's address and an embedded Redis started inside it (the host's Redis is not
reachable from there)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest_asyncio
from livekit import api

from agent_worker.realtime_standin import RunningStandin, StandinConfig, running_standin
from agent_worker.testing import WorkerProcess, running_worker
from agentline.keys import Keys
from agentline.redis_conn import EmbeddedRedis, make_client
from livekit_emulator.netns import NetNamespace
from livekit_emulator.rtc.testing import netns
from livekit_emulator.testing import running_emulator

sys.path.insert(0, str(Path(__file__).parent))  # the helper module beside this one
from aw_stack import NamespacedStack

__all__ = ["netns"]  # the fixture, imported to be used here


@pytest_asyncio.fixture
async def ns_stack(netns: NetNamespace) -> AsyncIterator[NamespacedStack]:
    embedded = EmbeddedRedis()
    redis_url = await embedded.start()
    redis = make_client(redis_url)
    try:
        async with running_emulator(host=netns.server_ip) as emu:
            lk_api = api.LiveKitAPI(emu.http_url, emu.api_key, emu.api_secret)
            try:
                yield NamespacedStack(emu, lk_api, redis_url, redis, Keys("agent-worker-test"))
            finally:
                await lk_api.aclose()
    finally:
        await redis.aclose()
        await embedded.stop()


@pytest_asyncio.fixture
async def standin(ns_stack: NamespacedStack) -> AsyncIterator[RunningStandin]:
    """The Realtime stand-in, started inside the namespace (hence after ``ns_stack``)."""
    async with running_standin(StandinConfig(pace=0.0)) as s:
        yield s


@pytest_asyncio.fixture
async def start_worker(
    ns_stack: NamespacedStack,
) -> AsyncIterator[Callable[..., AbstractAsyncContextManager[WorkerProcess]]]:
    """``async with start_worker(openai_base_url=..., max_jobs=2) as worker``."""

    def start(**kwargs: Any) -> AbstractAsyncContextManager[WorkerProcess]:
        emu = ns_stack.emu
        return running_worker(
            emu.ws_url, emu.api_key, emu.api_secret,
            redis_url=ns_stack.redis_url, namespace=ns_stack.keys.namespace, **kwargs,
        )  # fmt: skip

    yield start
