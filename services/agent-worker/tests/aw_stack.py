"""The stack a worker under test talks to (made by the ``ns_stack`` fixture in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

from livekit import api
from redis.asyncio import Redis

from agentline.keys import Keys
from livekit_emulator.testing import RunningEmulator


@dataclass
class NamespacedStack:
    """What a worker needs, all inside the test's network namespace."""

    emu: RunningEmulator
    lk_api: api.LiveKitAPI
    redis_url: str
    redis: Redis
    keys: Keys
