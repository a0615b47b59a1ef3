"""Each failure reason, produced with the emulator's switches, asserted with its stage,
reason and hint."""

from __future__ import annotations

import asyncio

from harness import AGENT, SECRET, harness, register_worker
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.lifecycle import DispatchState, FailureReason, reason_info
from agentline.schema import DispatchRecord


async def _failed_event(h, dispatch_id: str):  # type: ignore[no-untyped-def]
    events = await h.store.events(dispatch_id)
    failed = [e for e in events if e.state is DispatchState.FAILED]
    assert len(failed) == 1, events
    return failed[0], events


def _assert_reason(record: DispatchRecord, reason: FailureReason) -> None:
    assert record.state is DispatchState.FAILED, record
    assert record.reason is reason, record


async def test_agent_name_nobody_serves_names_the_served_ones(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys) as h:
        dispatch_id = await h.submit(agent_name="nobody-serves-this")
        record = await h.wait_terminal(dispatch_id, within=3)
        _assert_reason(record, FailureReason.NO_WORKER_FOR_AGENT)
        event, _ = await _failed_event(h, dispatch_id)
        assert event.previous is DispatchState.REQUESTED  # failed before any LiveKit call
        assert event.detail["served_agent_names"] == AGENT
        assert event.hint == reason_info(FailureReason.NO_WORKER_FOR_AGENT).hint
        assert AGENT in record.error_detail
        assert _dispatches(await h.emu.admin.state()) == []  # LiveKit never called


async def test_no_worker_at_all(redis_client: Redis, redis_url: str, keys: Keys) -> None:
    async with harness(redis_client, redis_url, keys, workers=()) as h:
        dispatch_id = await h.submit()
        record = await h.wait_terminal(dispatch_id, within=3)
        _assert_reason(record, FailureReason.NO_WORKER_FOR_AGENT)
        event, _ = await _failed_event(h, dispatch_id)
        assert event.detail["served_agent_names"] == "(none)"


async def test_registry_wait_policy_dispatches_once_a_worker_registers(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(
        redis_client, redis_url, keys, registered=False, registry_policy="wait",
        registry_wait_seconds=3.0,
    ) as h:  # fmt: skip
        dispatch_id = await h.submit()
        await register_worker(redis_client, keys)
        record = await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=5)
        assert record.reason is None


async def test_advise_policy_unserved_name_fails_by_registry_at_assign_timeout(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(
        redis_client, redis_url, keys, registered=False, registry_policy="advise"
    ) as h:
        dispatch_id = await h.submit(agent_name="nobody-serves-this")
        record = await h.wait_terminal(dispatch_id, within=5)
        _assert_reason(record, FailureReason.NO_WORKER_FOR_AGENT)
        event, _ = await _failed_event(h, dispatch_id)
        assert event.previous is DispatchState.DISPATCHED  # LiveKit said OK; nobody came
        # the abandoned LiveKit dispatch is deleted so that no late worker picks it up
        for _ in range(50):  # deleted right after the failure is recorded
            state = await h.emu.admin.state()
            left = [d for d in _dispatches(state) if d.get("agent_name") == "nobody-serves-this"]
            if not left:
                break
            await asyncio.sleep(0.05)
        assert not left


def _dispatches(state: dict) -> list[dict]:  # type: ignore[type-arg]
    return [d for room in state["rooms"] for d in room["dispatches"]]


async def test_workers_at_capacity_job_dropped_not_assigned_then_exhausted(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    # Admission off: what LiveKit does to a job when every worker is FULL (with admission on,
    # the second dispatch waits for the slot instead: test_admission_flow.py).
    async with harness(
        redis_client, redis_url, keys, workers=[(AGENT, 1)], max_attempts=2, admission_enabled=False
    ) as h:
        first = await h.submit()
        await h.wait_state(first, [DispatchState.SPEAKING], within=5)
        second = await h.submit()  # the only worker is FULL: LiveKit drops the job
        record = await h.wait_terminal(second, within=8)
        _assert_reason(record, FailureReason.RETRIES_EXHAUSTED)
        event, events = await _failed_event(h, second)
        assert event.detail["last_failure"] == "not_assigned"
        assert event.detail["attempts"] == "2"
        retries = [e for e in events if e.detail.get("retry_after") == "not_assigned"]
        assert len(retries) == 1
        assert await h.emu.admin.max_agents_seen_in_room(record.room) == 0


async def test_single_attempt_reports_not_assigned(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, max_attempts=1) as h:
        await h.emu.admin.workers_ignore_availability(AGENT)
        dispatch_id = await h.submit()
        record = await h.wait_terminal(dispatch_id, within=5)
        _assert_reason(record, FailureReason.NOT_ASSIGNED)
        event, _ = await _failed_event(h, dispatch_id)
        assert event.hint == reason_info(FailureReason.NOT_ASSIGNED).hint


async def test_accepted_never_joined_retries_then_exhausted(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, workers=(), max_attempts=2) as h:
        await register_worker(redis_client, keys)
        await h.emu.admin.add_simulated_worker(AGENT, capacity=5, join=False)
        dispatch_id = await h.submit()
        record = await h.wait_terminal(dispatch_id, within=10)
        _assert_reason(record, FailureReason.RETRIES_EXHAUSTED)
        event, events = await _failed_event(h, dispatch_id)
        assert event.detail["last_failure"] == "join_timeout"
        assert [e.state.value for e in events].count("assigned") == 2
        assert await h.emu.admin.max_agents_seen_in_room(record.room) == 0


async def test_joined_but_no_audio(redis_client: Redis, redis_url: str, keys: Keys) -> None:
    async with harness(redis_client, redis_url, keys, workers=()) as h:
        await register_worker(redis_client, keys)
        await h.emu.admin.add_simulated_worker(AGENT, capacity=5, publish_audio=False)
        dispatch_id = await h.submit()
        record = await h.wait_terminal(dispatch_id, within=5)
        _assert_reason(record, FailureReason.NO_AUDIO)
        event, _ = await _failed_event(h, dispatch_id)
        assert event.previous is DispatchState.JOINED
        assert event.hint == reason_info(FailureReason.NO_AUDIO).hint
        # the silent agent is removed: it held a worker slot and the room is free again
        assert await h.emu.admin.agents_in_room(record.room) == []
        assert await h.emu.admin.max_agents_seen_in_room(record.room) == 1


async def test_wrong_api_secret_is_livekit_auth_without_retry(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    wrong = "wrong-" + SECRET
    async with harness(redis_client, redis_url, keys, dispatcher_secret=wrong) as h:
        dispatch_id = await h.submit()
        record = await h.wait_terminal(dispatch_id, within=3)
        _assert_reason(record, FailureReason.LIVEKIT_AUTH)
        event, _ = await _failed_event(h, dispatch_id)
        assert event.detail["status"] == "401"
        assert event.previous is DispatchState.DISPATCHING
        calls = h.dispatcher.metrics.livekit_calls.labels("CreateRoom", "401")
        assert calls._sum.get() > 0  # one call, not retried
        count = sum(
            s.value
            for m in h.dispatcher.metrics.registry.collect()
            if m.name == "dispatcher_livekit_call_seconds"
            for s in m.samples
            if s.name.endswith("_count")
            and s.labels.get("code") == "401"
            and s.labels.get("method") != "ListRooms"  # the start-up credentials check
        )
        assert count == 1


async def test_livekit_rejected_on_4xx(redis_client: Redis, redis_url: str, keys: Keys) -> None:
    async with harness(redis_client, redis_url, keys) as h:
        await h.emu.admin.set_fault("CreateRoom", http_status=400, twirp_code="invalid_argument")
        dispatch_id = await h.submit()
        record = await h.wait_terminal(dispatch_id, within=3)
        _assert_reason(record, FailureReason.LIVEKIT_REJECTED)


async def test_livekit_down_then_back_succeeds(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys) as h:
        await h.emu.admin.set_fault("*", http_status=503, twirp_code="unavailable", count=3)
        dispatch_id = await h.submit()
        record = await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=8)
        assert record.attempts == 1
        assert await h.emu.admin.max_agents_seen_in_room(record.room) == 1


async def test_livekit_down_for_good_is_unreachable(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, livekit_timeout_seconds=0.3) as h:
        await h.emu.admin.set_fault("CreateRoom", reset_connection=True)
        dispatch_id = await h.submit()
        record = await h.wait_terminal(dispatch_id, within=8)
        _assert_reason(record, FailureReason.LIVEKIT_UNREACHABLE)
        event, _ = await _failed_event(h, dispatch_id)
        assert event.detail["method"] == "CreateRoom"
