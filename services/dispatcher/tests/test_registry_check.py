"""The served-names cache in front of the worker registry (real Redis)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.registry import WorkerRegistry
from agentline.schema import WorkerInfo
from dispatcher.registry_check import ServedNames


class CountingRegistry(WorkerRegistry):
    """The real registry, counting its reads of the served names."""

    reads = 0

    async def served_agent_names(self) -> list[str]:
        self.reads += 1
        return await super().served_agent_names()


async def test_a_warm_cache_is_read_again_in_the_background(
    redis_client: Redis, keys: Keys
) -> None:
    registry = CountingRegistry(redis_client, keys)
    await registry.heartbeat(WorkerInfo(worker_id="w1", agent_name="travel", capacity=4))
    served = ServedNames(registry, ttl=0.4)

    assert await served.serves("travel")
    assert registry.reads == 1
    assert await served.serves("travel")  # fresh: from the cache
    assert registry.reads == 1

    await asyncio.sleep(0.25)  # past half the ttl: answered at once, re-read behind it
    assert await served.serves("travel")
    assert registry.reads == 1
    await asyncio.sleep(0.05)
    assert registry.reads == 2
    await asyncio.sleep(0.25)  # the background read renewed the cache: still no wait
    assert await served.serves("travel")
    assert registry.reads == 2


async def test_a_name_not_served_is_read_again_before_the_answer(
    redis_client: Redis, keys: Keys
) -> None:
    registry = CountingRegistry(redis_client, keys)
    served = ServedNames(registry, ttl=10.0)
    assert not await served.serves("travel")
    await registry.heartbeat(WorkerInfo(worker_id="w1", agent_name="travel", capacity=4))
    await asyncio.sleep(0.06)  # past the racing-refresh guard
    assert await served.serves("travel")
    assert registry.reads == 2


async def test_a_stale_cache_is_not_trusted(redis_client: Redis, keys: Keys) -> None:
    registry = CountingRegistry(redis_client, keys)
    await registry.heartbeat(WorkerInfo(worker_id="w1", agent_name="travel", capacity=4))
    served = ServedNames(registry, ttl=0.1)
    assert await served.serves("travel")
    await registry.deregister("w1", "travel")
    await asyncio.sleep(0.15)  # past the ttl: the answer waits for a read
    assert not await served.serves("travel")
    assert registry.reads == 2
