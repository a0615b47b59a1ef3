import asyncio

import pytest

from agentline.admission import Admission
from agentline.registry import WorkerRegistry
from agentline.schema import WorkerInfo

AGENT = "travel-assistant"


async def _workers(redis_client, keys, *capacities, ttl=30.0, draining=False):
    registry = WorkerRegistry(redis_client, keys, ttl_seconds=ttl)
    for index, capacity in enumerate(capacities):
        await registry.heartbeat(WorkerInfo(f"w{index}", AGENT, capacity, draining=draining))
    return registry


async def test_admits_within_capacity_then_queues_fifo(redis_client, keys):
    await _workers(redis_client, keys, 1, 1)
    admission = Admission(redis_client, keys)
    results = [await admission.try_admit(f"d{i}", AGENT) for i in range(5)]
    assert [r.admitted for r in results] == [True, True, False, False, False]
    assert [r.position for r in results[2:]] == [1, 2, 3]
    assert results[0].capacity == 2
    again = await admission.try_admit("d3", AGENT)  # idempotent: keeps its place
    assert not again.admitted and again.position == 2
    assert await admission.position("d4", AGENT) == 3


async def test_release_admits_the_queue_head(redis_client, keys):
    await _workers(redis_client, keys, 1)
    admission = Admission(redis_client, keys)
    assert (await admission.try_admit("a", AGENT)).admitted
    assert not (await admission.try_admit("b", AGENT)).admitted
    assert not (await admission.try_admit("c", AGENT)).admitted
    assert await admission.release("a", AGENT) == ["b"]
    assert await admission.position("c", AGENT) == 1
    status = await admission.status(AGENT)
    assert (status.capacity, status.used, status.waiting) == (1, 1, 1)


async def test_new_arrival_does_not_jump_the_queue(redis_client, keys):
    registry = await _workers(redis_client, keys, 1)
    admission = Admission(redis_client, keys)
    await admission.try_admit("a", AGENT)
    await admission.try_admit("b", AGENT)  # waits
    await registry.heartbeat(WorkerInfo("w9", AGENT, 1))  # capacity raised
    late = await admission.try_admit("late", AGENT)
    assert not late.admitted and late.position == 2
    assert await admission.pump(AGENT) == ["b"]


async def test_unconfirmed_reservation_expires_confirmed_one_holds(redis_client, keys):
    await _workers(redis_client, keys, 2)
    admission = Admission(redis_client, keys, reserve_ms=100)
    await admission.try_admit("crashed", AGENT)
    await admission.try_admit("confirmed", AGENT)
    assert await admission.confirm("confirmed", AGENT)
    assert not (await admission.try_admit("next", AGENT)).admitted
    await asyncio.sleep(0.15)
    assert await admission.pump(AGENT) == ["next"]
    assert (await admission.status(AGENT)).used == 2


async def test_dead_or_draining_workers_give_no_capacity(redis_client, keys):
    await _workers(redis_client, keys, 3, ttl=0.1)
    await _workers(redis_client, keys, 5, draining=True)
    admission = Admission(redis_client, keys)
    await asyncio.sleep(0.15)
    result = await admission.try_admit("x", AGENT)
    assert not result.admitted and result.capacity == 0


async def test_concurrent_admissions_never_overcommit(redis_client, keys):
    await _workers(redis_client, keys, 2, 3)
    replicas = [Admission(redis_client, keys) for _ in range(2)]
    results = await asyncio.gather(*(replicas[i % 2].try_admit(f"d{i}", AGENT) for i in range(50)))
    assert sum(r.admitted for r in results) == 5
    assert sorted(r.position for r in results if not r.admitted) == list(range(1, 46))


async def test_cancel_while_waiting_leaves_the_queue(redis_client, keys):
    await _workers(redis_client, keys, 1)
    admission = Admission(redis_client, keys)
    await admission.try_admit("a", AGENT)
    await admission.try_admit("b", AGENT)
    await admission.try_admit("c", AGENT)
    assert await admission.release("b", AGENT) == []
    assert await admission.waiting_ids(AGENT) == ["c"]


async def test_wait_estimate_from_recent_durations(redis_client, keys):
    admission = Admission(redis_client, keys)
    assert await admission.estimated_wait_ms(AGENT, 2, 1) == 0
    for duration in (60_000, 120_000):
        await admission.record_job_duration(AGENT, duration)
    assert await admission.estimated_wait_ms(AGENT, 2, 2) == 90_000


async def test_held_reservation_is_extended_and_front_queueing(redis_client, keys):
    await _workers(redis_client, keys, 1)
    admission = Admission(redis_client, keys, reserve_ms=100)
    assert (await admission.try_admit("a", AGENT)).admitted
    await admission.try_admit("b", AGENT)
    await asyncio.sleep(0.06)
    assert (await admission.try_admit("a", AGENT)).admitted  # extended by another 100 ms
    await asyncio.sleep(0.06)
    assert await admission.pump(AGENT) == []  # still held: 120 ms after it was first taken
    lost = await admission.try_admit("c", AGENT, front=True)
    assert not lost.admitted and lost.position == 1
    assert await admission.waiting_ids(AGENT) == ["c", "b"]
    assert await admission.queued_agent_names() == [AGENT]


async def test_release_by_shortens_a_hold_to_a_grace(redis_client, keys):
    await _workers(redis_client, keys, 1)
    admission = Admission(redis_client, keys)
    await admission.try_admit("a", AGENT)
    assert await admission.confirm("a", AGENT)  # held for hours
    await admission.try_admit("b", AGENT)
    assert await admission.release_by("a", AGENT, 100)
    assert await admission.pump(AGENT) == []  # still within the grace
    await asyncio.sleep(0.15)
    assert await admission.pump(AGENT) == ["b"]
    assert not await admission.release_by("gone", AGENT, 100)


@pytest.mark.parametrize("client", ["pipelined", "redis-py"])
async def test_admission_in_the_intake_round_trip_runs_only_for_its_owner(
    redis_client, keys, client
):
    """``try_admit_in``: queued after the lease and room commands, it reserves a slot only
    when the lease holds this token, the room is claimed for this dispatch and the record is
    still new; otherwise it changes nothing. On the dispatcher's pipelined connection and on
    redis-py's (its fallback for TLS URLs)."""
    from agentline.admission import OwnedRequest
    from agentline.redis_mux import MuxRedis

    await _workers(redis_client, keys, 2)
    url = "redis://{host}:{port}/{db}".format(**redis_client.connection_pool.connection_kwargs)
    mux = MuxRedis(url) if client == "pipelined" else redis_client
    try:
        admission = Admission(redis_client, keys, scripts_redis=mux)

        async def intake(dispatch_id, token, state="requested"):
            owned = OwnedRequest(
                lease_key=f"{keys.prefix}:test-lease:{dispatch_id}",
                lease_token="ours",
                room_key=keys.room_dispatch(f"room-{dispatch_id}"),
                record_key=keys.dispatch(dispatch_id),
                new_state="requested",
            )
            await redis_client.hset(owned.record_key, "state", state)
            async with mux.pipeline(transaction=False) as pipe:
                pipe.set(owned.lease_key, token, nx=True)
                pipe.set(owned.room_key, dispatch_id, nx=True)
                await admission.try_admit_in(pipe, dispatch_id, AGENT, owned)
                replies = await pipe.execute()
            return Admission.admitted_from(replies[2])

        assert await intake("other-holder", token="theirs") is None
        assert await intake("not-new", token="ours", state="dispatched") is None
        assert (await admission.status(AGENT)).used == 0
        first = await intake("d1", token="ours")
        assert first is not None and first.admitted and first.used == 1
        assert (await intake("d2", token="ours")).admitted
        third = await intake("d3", token="ours")  # no slot left: queued, as try_admit would
        assert third is not None and not third.admitted and third.position == 1
        status = await admission.status(AGENT)
        assert (status.used, status.waiting) == (2, 1)
    finally:
        if mux is not redis_client:
            await mux.aclose()
