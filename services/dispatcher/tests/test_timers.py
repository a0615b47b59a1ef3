"""Redis-held timers and ownership, on real Redis."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from agentline.keys import Keys
from dispatcher.timers import Deadlines, Leases, RoomOwners


async def test_due_deadlines_are_claimed_by_exactly_one_scanner(
    redis_client: Redis, keys: Keys
) -> None:
    deadlines = Deadlines(redis_client, keys)
    for n in range(200):
        await deadlines.schedule(f"d{n}", 1_000 + n)
    await deadlines.schedule("later", 100_000)
    claims = await asyncio.gather(
        *(deadlines.claim_due(now_ms=5_000, lease_ms=60_000, limit=50) for _ in range(8))
    )
    claimed = [member for claim in claims for member in claim]
    assert len(claimed) == len(set(claimed)) == 200  # each due member once, none twice
    assert "later" not in claimed
    # a claim pushes the member one lease ahead: a dead claimer's member comes due again
    assert await deadlines.due_at("d0") == 65_000
    assert await deadlines.claim_due(now_ms=64_999, lease_ms=1, limit=500) == []
    assert len(await deadlines.claim_due(now_ms=65_000, lease_ms=1, limit=500)) == 200


async def test_a_lease_has_one_holder_across_replicas_and_tasks(
    redis_client: Redis, keys: Keys
) -> None:
    first, second = Leases(redis_client, keys, "a"), Leases(redis_client, keys, "b")
    assert await first.acquire("d1", 5_000)
    assert not await second.acquire("d1", 5_000)  # another replica
    assert not await first.acquire("d1", 5_000)  # another task of the same replica
    assert await first.renew("d1", 5_000, lazy=False)
    assert not await second.renew("d1", 5_000, lazy=False)
    await second.release("d1")  # not its lease: nothing happens
    assert await redis_client.exists(first.key("d1"))
    await first.release("d1")
    assert not await redis_client.exists(first.key("d1"))
    assert await second.acquire("d1", 5_000)
    assert not await first.renew("d1", 5_000, lazy=False)


async def test_an_expired_lease_is_lost_by_its_holder(redis_client: Redis, keys: Keys) -> None:
    first, second = Leases(redis_client, keys, "a"), Leases(redis_client, keys, "b")
    assert await first.acquire("d1", 50)
    await asyncio.sleep(0.1)
    assert await second.acquire("d1", 5_000)  # the first holder died or stalled
    assert not await first.renew("d1", 5_000, lazy=False)  # it finds out before acting
    await first.release("d1")
    assert await redis_client.get(second.key("d1")) is not None


async def test_room_has_one_owner_and_is_taken_over_only_from_the_expected_one(
    redis_client: Redis, keys: Keys
) -> None:
    rooms = RoomOwners(redis_client, keys)
    assert await rooms.claim("r", "d1")
    assert not await rooms.claim("r", "d2")
    assert not await rooms.take_over("r", "d3", "d2")  # d3 is not the owner
    assert await rooms.take_over("r", "d1", "d2")
    await rooms.release("r", "d1")  # d1 no longer owns it
    assert await rooms.owner("r") == "d2"
    await rooms.release("r", "d2")
    assert await rooms.owner("r") is None
