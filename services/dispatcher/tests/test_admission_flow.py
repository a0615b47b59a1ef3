"""Capacity-aware admission through the dispatcher: the emulator's simulated workers (capacity
enforced by the emulator: a full worker is not offered jobs, so over-commitment would show as
dropped jobs) with registry heartbeats, real Redis, an in-process dispatcher."""

from __future__ import annotations

import aiohttp
from harness import AGENT, Harness, harness, register_worker
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.lifecycle import DispatchState, FailureReason
from dispatcher.admission_flow import WAITING_CHECK_MS

ONE_SLOT_EACH = ((AGENT, 1), (AGENT, 1))


async def _cancel(h: Harness, dispatch_id: str) -> None:
    """What token-api does: transition to cancelled, then tell the dispatchers."""
    assert (await h.store.transition(dispatch_id, DispatchState.CANCELLED)).applied
    await h.redis.xadd(h.keys.control, {"action": "cancel", "dispatch_id": dispatch_id})


def _end_session(h: Harness, room: str) -> None:
    """The caller hangs up: the room closes, the agent's job ends (participant_left and
    room_finished webhooks)."""
    h.emu.emulator.rooms.close(h.emu.emulator.rooms.get(room))


async def _dropped_jobs(h: Harness) -> list[dict]:  # type: ignore[type-arg]
    state = await h.emu.admin.state()
    return [j for j in state["dropped_jobs"] if j.get("agent_name") == AGENT]


async def _queue_events(h: Harness, dispatch_id: str) -> list[int]:
    events = await h.store.events(dispatch_id)
    return [int(e.detail["position"]) for e in events if e.state is DispatchState.WAITING]


async def test_two_slots_five_sessions_fifo_and_next_dispatched_at_once(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, workers=ONE_SLOT_EACH) as h:
        ids = []
        for _ in range(5):  # one after the other: arrival order is the queue order
            ids.append(await h.submit())
            await h.wait_state(ids[-1], [DispatchState.SPEAKING, DispatchState.WAITING])
        speaking = [await h.wait_state(d, [DispatchState.SPEAKING]) for d in ids[:2]]
        waiting = [await h.store.get(d) for d in ids[2:]]
        assert [r.state for r in waiting if r] == [DispatchState.WAITING] * 3
        assert [r.queue_position for r in waiting if r] == [1, 2, 3]
        assert await h.states_seen(ids[2]) == ["requested", "waiting"]

        _end_session(h, speaking[0].room)
        ended = await h.wait_state(ids[0], [DispatchState.ENDED])
        nxt = await h.wait_state(ids[2], [DispatchState.SPEAKING])
        # The slot freed by the job's end dispatched the queue head at once.
        gap_ms = nxt.timestamps["dispatching"] - ended.timestamps["ended"]
        print(f"job ended → next dispatching: {gap_ms} ms")
        # Well before a waiting dispatch's periodic look (every 5 s): the release started it.
        # (How fast that is, is bench/admission.py's figure, not this test's.)
        assert gap_ms < WAITING_CHECK_MS / 5, gap_ms
        assert nxt.queue_position == 0 and nxt.attempts == 1
        # The others moved up, each told so by a queue event (what SSE serves).
        await h.wait_state(ids[4], [DispatchState.WAITING])
        assert (await h.store.get(ids[3])).queue_position == 1  # type: ignore[union-attr]
        assert (await h.store.get(ids[4])).queue_position == 2  # type: ignore[union-attr]
        assert await _queue_events(h, ids[4]) == [3, 2]

        _end_session(h, speaking[1].room)
        await h.wait_state(ids[3], [DispatchState.SPEAKING])
        assert await _queue_events(h, ids[4]) == [3, 2, 1]
        assert await _dropped_jobs(h) == []  # no worker was ever offered a job beyond capacity
        status = await h.dispatcher.engine.ctx.admission.status(AGENT)  # type: ignore[union-attr]
        assert (status.capacity, status.used, status.waiting) == (2, 2, 1)


async def test_wait_bound_fails_with_no_capacity(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(
        redis_client, redis_url, keys, workers=((AGENT, 1),), max_wait_seconds=1
    ) as h:
        first = await h.submit()
        await h.wait_state(first, [DispatchState.SPEAKING])
        second = await h.submit()
        await h.wait_state(second, [DispatchState.WAITING])
        record = await h.wait_terminal(second, within=5)
        assert record.state is DispatchState.FAILED
        assert record.reason is FailureReason.NO_CAPACITY
        waited = record.timestamps["failed"] - record.timestamps["waiting"]
        assert waited >= 1000
        (event,) = [e for e in await h.store.events(second) if e.state is DispatchState.FAILED]
        assert "Scale the agent-worker deployment" in event.hint
        assert event.detail["capacity"] == "1" and event.detail["used"] == "1"
        assert await redis_client.llen(keys.waiting_queue(AGENT)) == 0
        assert (await h.store.get(first)).state is DispatchState.SPEAKING  # type: ignore[union-attr]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{h.port}/metrics") as response,
        ):
            text = await response.text()
        assert 'dispatcher_admission_wait_seconds_count{outcome="no_capacity"} 1.0' in text
        assert 'dispatcher_admission_slots{agent_name="travel-assistant"} 1.0' in text
        assert 'dispatcher_admission_slots_used{agent_name="travel-assistant"} 1.0' in text
        assert 'dispatcher_admission_waiting{agent_name="travel-assistant"} 0.0' in text
        assert 'dispatcher_failures_total{reason="no_capacity"} 1.0' in text


async def test_cancel_while_waiting_leaves_the_queue(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, workers=((AGENT, 1),)) as h:
        busy = await h.submit()
        busy_record = await h.wait_state(busy, [DispatchState.SPEAKING])
        cancelled, kept = await h.submit(), None
        await h.wait_state(cancelled, [DispatchState.WAITING])
        kept = await h.submit()
        await h.wait_state(kept, [DispatchState.WAITING])
        assert (await h.store.get(kept)).queue_position == 2  # type: ignore[union-attr]

        await _cancel(h, cancelled)
        await h.wait_state(kept, [DispatchState.WAITING])
        for _ in range(100):  # the dispatcher takes it out of the queue and moves the rest up
            if await redis_client.lrange(keys.waiting_queue(AGENT), 0, -1) == [kept]:
                break
            await h.wait_state(kept, [DispatchState.WAITING])
        assert await redis_client.lrange(keys.waiting_queue(AGENT), 0, -1) == [kept]
        _end_session(h, busy_record.room)
        await h.wait_state(kept, [DispatchState.SPEAKING])
        assert await _queue_events(h, kept) == [2, 1]
        record = await h.store.get(cancelled)
        assert record is not None and record.state is DispatchState.CANCELLED
        assert "dispatching" not in record.timestamps  # never reached LiveKit


async def test_cancelled_before_any_dispatcher_saw_it_passes_its_slot_on(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, workers=((AGENT, 1),)) as h:
        busy = await h.submit()
        busy_record = await h.wait_state(busy, [DispatchState.SPEAKING])
        gone, kept = await h.submit(), None
        await h.wait_state(gone, [DispatchState.WAITING])
        kept = await h.submit()
        await h.wait_state(kept, [DispatchState.WAITING])
        # cancelled in the store only: its control message is not (yet) handled
        assert (await h.store.transition(gone, DispatchState.CANCELLED)).applied
        _end_session(h, busy_record.room)  # the slot goes to `gone`, which passes it on
        # at once: not when `gone`'s unconfirmed reservation expires (7 s with these settings)
        record = await h.wait_state(kept, [DispatchState.SPEAKING], within=3)
        assert record.attempts == 1
        assert await redis_client.zscore(keys.slots_used(AGENT), gone) is None


async def test_capacity_raised_admits_the_queue_head(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, workers=((AGENT, 1),)) as h:
        busy = await h.submit()
        await h.wait_state(busy, [DispatchState.SPEAKING])
        queued = await h.submit()
        await h.wait_state(queued, [DispatchState.WAITING])
        await h.emu.admin.add_simulated_worker(AGENT, capacity=1)
        await register_worker(redis_client, keys, AGENT, 1)  # its heartbeat: capacity 2
        record = await h.wait_state(queued, [DispatchState.SPEAKING])
        assert record.attempts == 1
        assert await _dropped_jobs(h) == []


async def test_admission_off_under_registry_policy_advise(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(
        redis_client, redis_url, keys, workers=((AGENT, 1),), registry_policy="advise"
    ) as h:
        assert not h.dispatcher.engine.admitter.enabled
        first = await h.submit()
        await h.wait_state(first, [DispatchState.SPEAKING])
        second = await h.submit()  # not queued: LiveKit drops it (the worker is full)
        record = await h.wait_terminal(second, within=10)
        assert "waiting" not in record.timestamps
        assert record.reason is FailureReason.RETRIES_EXHAUSTED


async def test_retry_that_lost_its_slot_waits_at_the_head_with_nothing_in_livekit(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, workers=((AGENT, 1),)) as h:
        await h.emu.admin.workers_ignore_availability(AGENT)  # no job is ever accepted
        first = await h.submit()
        record = await h.wait_state(first, [DispatchState.DISPATCHED])
        second = await h.submit()
        await h.wait_state(second, [DispatchState.WAITING])
        # first's reservation expires (as when its retry comes too late) and second takes it
        await redis_client.zrem(keys.slots_used(AGENT), first)
        await h.dispatcher.engine.admitter.pump(AGENT)
        await h.wait_state(second, [DispatchState.DISPATCHED])
        # first's assign timeout: its retry finds no slot, so it waits, first in line
        waiting = await h.wait_state(first, [DispatchState.WAITING])
        assert waiting.queue_position == 1
        assert await redis_client.lrange(keys.waiting_queue(AGENT), 0, -1) == [first]
        state = await h.emu.admin.state()
        room = next(r for r in state["rooms"] if r["name"] == record.room)
        assert room["dispatches"] == []  # its LiveKit dispatch was deleted
