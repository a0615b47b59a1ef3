"""Cancel (also racing a create) and re-dispatch without ever two agents in one room."""

from __future__ import annotations

import asyncio

from harness import AGENT, Harness, harness, register_worker
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.lifecycle import DispatchState


async def _cancel(h: Harness, dispatch_id: str) -> None:
    """What token-api does: transition to cancelled, then tell the dispatchers."""
    result = await h.store.transition(dispatch_id, DispatchState.CANCELLED)
    assert result.applied
    await h.redis.xadd(h.keys.control, {"action": "cancel", "dispatch_id": dispatch_id})


async def _room_state(h: Harness, room: str) -> dict:  # type: ignore[type-arg]
    state = await h.emu.admin.state()
    return next((r for r in state["rooms"] if r["name"] == room), {"dispatches": [], "agents": []})


async def _until_empty(h: Harness, room: str, within: float = 3.0) -> dict:  # type: ignore[type-arg]
    deadline = asyncio.get_running_loop().time() + within
    while True:
        state = await _room_state(h, room)
        if not state["dispatches"] and not state["agents"]:
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"room {room} still has {state}")
        await asyncio.sleep(0.05)


async def test_cancel_removes_dispatch_and_agent(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys) as h:
        dispatch_id = await h.submit()
        record = await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=3)
        assert await h.emu.admin.agents_in_room(record.room)
        await _cancel(h, dispatch_id)
        await _until_empty(h, record.room)
        assert await redis_client.zscore(keys.deadlines, dispatch_id) is None


async def test_cancel_racing_create_deletes_what_was_created(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys) as h:
        await h.emu.admin.set_fault("CreateRoom", latency_s=0.5, count=1)
        dispatch_id = await h.submit()
        record = await h.wait_state(dispatch_id, [DispatchState.DISPATCHING], within=2)
        await _cancel(h, dispatch_id)  # while CreateRoom is in flight
        await asyncio.sleep(0.8)
        await _until_empty(h, record.room)
        final = await h.store.get(dispatch_id)
        assert final is not None and final.state is DispatchState.CANCELLED
        assert await h.emu.admin.max_agents_seen_in_room(record.room) <= 1


async def test_retry_after_join_timeout_ends_with_exactly_one_agent(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, workers=()) as h:
        await register_worker(redis_client, keys)
        slow = await h.emu.admin.add_simulated_worker(AGENT, capacity=5, join_delay_s=1.4)
        dispatch_id = await h.submit()
        record = await h.wait_state(dispatch_id, [DispatchState.ASSIGNED], within=3)
        # The slow worker goes away (its job is deleted by the retry); a good one comes.
        await h.emu.admin.add_simulated_worker(AGENT, capacity=5)
        await h.emu.admin.remove_worker(worker_id=slow, agents_leave=True)
        final = await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=6)
        assert final.attempts == 2
        events = [e for e in await h.store.events(dispatch_id)]
        assert any(e.detail.get("retry_after") == "join_timeout" for e in events)
        await asyncio.sleep(1.6)  # past the slow worker's join delay
        assert await h.emu.admin.agents_in_room(record.room) == [final.agent_identity]
        assert await h.emu.admin.max_agents_seen_in_room(record.room) == 1


async def test_late_join_of_first_attempt_is_adopted_not_doubled(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    """An agent that joins just after the join timeout (before the retry's checks) is ours:
    it is adopted instead of dispatching a second one."""
    async with harness(redis_client, redis_url, keys, workers=(), retry_backoff_seconds=0.3) as h:
        await register_worker(redis_client, keys)
        await h.emu.admin.add_simulated_worker(AGENT, capacity=5, join_delay_s=1.05)
        dispatch_ids = [await h.submit() for _ in range(5)]
        finals = [await h.wait_terminal_or_speaking(d) for d in dispatch_ids]
        for record in finals:
            assert await h.emu.admin.max_agents_seen_in_room(record.room) <= 1


async def test_worker_socket_closed_after_accept_ends_with_one_agent(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, workers=(), join_timeout_seconds=1.5) as h:
        await register_worker(redis_client, keys)
        await h.emu.admin.add_simulated_worker(AGENT, capacity=5, join_delay_s=0.8)
        dispatch_id = await h.submit()
        record = await h.wait_state(dispatch_id, [DispatchState.ASSIGNED], within=3)
        assert await h.emu.admin.close_worker_sockets(AGENT) == 1  # after accept, before join
        final = await h.wait_terminal_or_speaking(dispatch_id, within=10)
        assert final.state is DispatchState.SPEAKING, final
        assert final.attempts <= 2
        await asyncio.sleep(1.0)  # any straggler would have joined by now
        assert await h.emu.admin.agents_in_room(record.room) == [final.agent_identity]
        assert await h.emu.admin.max_agents_seen_in_room(record.room) == 1
