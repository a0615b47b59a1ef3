"""Stream edge cases: an invalid request and a request delivered too often go to the
dead-letter stream with the reason; a dead consumer's entries are taken over."""

from __future__ import annotations

import asyncio

from harness import harness
from redis.asyncio import Redis

from agentline.keys import DISPATCHER_GROUP, Keys
from agentline.lifecycle import DispatchState


async def _dead_letters(redis: Redis, keys: Keys, count: int, within: float = 5.0) -> list:  # type: ignore[type-arg]
    for _ in range(int(within / 0.05)):
        rows = await redis.xrange(keys.dead_letters)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"dead letters: {await redis.xrange(keys.dead_letters)}")


async def test_invalid_request_is_dead_lettered_with_the_reason(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys) as h:
        await redis_client.xadd(keys.requests, {"dispatch_id": "dsp_x", "request": "{not json"})
        ((_, fields),) = await _dead_letters(redis_client, keys, 1)
        assert fields["dead_letter_reason"].startswith("invalid request")
        assert fields["dispatch_id"] == "dsp_x"
        # the stream goes on: the next request is served
        dispatch_id = await h.submit()
        await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=5)


async def test_dead_consumers_entries_are_taken_over_then_dead_lettered_after_n_deliveries(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    # A consumer that died holding two entries: one fresh, one delivered too often already.
    await redis_client.xgroup_create(keys.requests, DISPATCHER_GROUP, id="0", mkstream=True)
    async with harness(redis_client, redis_url, keys, max_deliveries=3) as h:
        await h.dispatcher.stop(drain_seconds=0.5)  # only the dead consumer reads for now
        taken_over = await h.submit()
        too_often = await h.submit()
        await redis_client.xreadgroup(DISPATCHER_GROUP, "dead-pod", {keys.requests: ">"})
        rows = await redis_client.xrange(keys.requests)
        too_often_entry = next(eid for eid, f in rows if f["dispatch_id"] == too_often)
        for _ in range(3):  # delivered 4 times in all
            await redis_client.xclaim(
                keys.requests, DISPATCHER_GROUP, "dead-pod", 0, [too_often_entry]
            )
    async with harness(redis_client, redis_url, keys, max_deliveries=3) as h2:
        record = await h2.wait_state(taken_over, [DispatchState.SPEAKING], within=8)
        assert record.attempts == 1
        ((_, fields),) = await _dead_letters(redis_client, keys, 1, within=8)
        assert fields["dispatch_id"] == too_often
        assert "delivered" in fields["dead_letter_reason"]
        pending = await redis_client.xpending(keys.requests, DISPATCHER_GROUP)
        assert pending["pending"] == 0
