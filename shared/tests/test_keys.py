"""Key names: a namespace's keys, and removing exactly them."""

from __future__ import annotations

from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.redis_conn import delete_namespace


async def test_delete_namespace_removes_its_keys_and_no_others(
    redis_client: Redis, keys: Keys
) -> None:
    neighbour = Keys(keys.namespace + "-x")  # a namespace that shares the prefix's text
    glob = Keys(keys.namespace + "*")  # glob characters in a namespace are matched literally
    for k in (keys, neighbour, glob):
        await redis_client.set(k.deadlines, "1")
    await redis_client.hset(keys.dispatch("d1"), "state", "requested")
    await delete_namespace(redis_client, glob)
    assert await redis_client.exists(keys.deadlines, neighbour.deadlines) == 2
    await delete_namespace(redis_client, keys, batch=1)
    assert await redis_client.exists(keys.deadlines, keys.dispatch("d1")) == 0
    assert await redis_client.exists(neighbour.deadlines) == 1
    await delete_namespace(redis_client, neighbour)
