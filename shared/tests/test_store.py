import asyncio

import msgspec
import pytest

from agentline.ids import new_dispatch_id
from agentline.lifecycle import DispatchState, FailureReason
from agentline.schema import DispatchKind, DispatchRecord, DispatchRequest
from agentline.store import REQUESTED_EVENT_ID, DispatchStore


def _request(room: str = "room-1") -> DispatchRequest:
    return DispatchRequest(dispatch_id=new_dispatch_id(), room=room, agent_name="travel-assistant")


async def test_create_writes_record_event_and_stream_entry(redis_client, keys):
    store = DispatchStore(redis_client, keys)
    request = _request()
    result = await store.create(request)
    assert result.created and result.entry_id
    record = await store.get(request.dispatch_id)
    assert record is not None
    assert record.state is DispatchState.REQUESTED
    assert record.room == "room-1" and record.version == 1
    assert "requested" in record.timestamps
    entries = await redis_client.xrange(keys.requests)
    assert [e[1]["dispatch_id"] for e in entries] == [request.dispatch_id]
    events = await store.events(request.dispatch_id)
    assert [e.state for e in events] == [DispatchState.REQUESTED]


@pytest.mark.parametrize(
    "request_",
    [
        DispatchRequest(
            "dsp_plain", "room-1", "travel-assistant", requested_at_ms=1_700_000_000_001
        ),
        DispatchRequest(
            "dsp_full",
            "room-2",
            "travel-assistant",
            kind=DispatchKind.REINVITE,
            metadata='{"lang":"fr","note":"\\u00e9t\u00e9 \\"quoted\\""}',
            caller_identity="user-ünï",
            requested_at_ms=1_700_000_000_002,
            trace={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "tracestate": "k=v/w"},
        ),
    ],
)
async def test_the_script_writes_the_hash_of_the_new_record(redis_client, keys, request_):
    # The create script builds the record itself; it must be the hash the schema defines.
    await DispatchStore(redis_client, keys).create(request_)
    at = request_.requested_at_ms
    expected = DispatchRecord(
        id=request_.dispatch_id,
        state=DispatchState.REQUESTED,
        room=request_.room,
        agent_name=request_.agent_name,
        kind=request_.kind,
        metadata=request_.metadata,
        caller_identity=request_.caller_identity,
        created_at_ms=at,
        updated_at_ms=at,
        version=1,
        timestamps={"requested": at},
        trace=request_.trace,
    )
    stored = await redis_client.hgetall(keys.dispatch(request_.dispatch_id))
    assert stored == expected.to_hash()
    assert await DispatchStore(redis_client, keys).get(request_.dispatch_id) == expected


async def test_the_requested_event_comes_from_the_record(redis_client, keys):
    store = DispatchStore(redis_client, keys)
    request = msgspec.structs.replace(_request(), requested_at_ms=1_800_000_000_123)
    await store.create(request)
    assert not await redis_client.exists(keys.dispatch_events(request.dispatch_id))
    [requested] = await store.events(request.dispatch_id)
    assert requested.event_id == REQUESTED_EVENT_ID and requested.seq == 1
    assert requested.at_ms == 1_800_000_000_123
    await store.transition(request.dispatch_id, DispatchState.DISPATCHING)
    events = await store.events(request.dispatch_id)
    assert [(e.state, e.seq) for e in events] == [
        (DispatchState.REQUESTED, 1),
        (DispatchState.DISPATCHING, 2),
    ]
    assert events[1].event_id > REQUESTED_EVENT_ID
    assert await store.events("dsp_unknown") == []


async def test_a_stream_that_holds_its_requested_event_is_not_given_another(redis_client, keys):
    # Dispatches created before create stopped writing the event keep theirs.
    store = DispatchStore(redis_client, keys)
    request = _request()
    await store.create(request)
    stream = keys.dispatch_events(request.dispatch_id)
    fields = {"dispatch_id": request.dispatch_id, "seq": "1", "state": "requested", "at_ms": "1"}
    written = await redis_client.xadd(stream, fields)
    assert [e.event_id for e in await store.events(request.dispatch_id)] == [written]


async def test_idempotent_create_under_concurrency(redis_client, keys):
    store = DispatchStore(redis_client, keys)
    requests = [_request() for _ in range(20)]
    results = await asyncio.gather(*(store.create(r, idempotency_key="same") for r in requests))
    winners = [r for r in results if r.created]
    assert len(winners) == 1
    assert {r.dispatch_id for r in results} == {winners[0].dispatch_id}
    assert await redis_client.xlen(keys.requests) == 1


async def test_valid_transition_records_timestamp_and_event(redis_client, keys):
    store = DispatchStore(redis_client, keys)
    request = _request()
    await store.create(request)
    result = await store.transition(
        request.dispatch_id, DispatchState.DISPATCHING, fields={"attempts": 1}
    )
    assert result.applied and result.previous is DispatchState.REQUESTED and result.version == 2
    record = await store.get(request.dispatch_id)
    assert record and record.state is DispatchState.DISPATCHING and record.attempts == 1
    assert "dispatching" in record.timestamps
    events = await store.events(request.dispatch_id)
    assert [e.state for e in events] == [DispatchState.REQUESTED, DispatchState.DISPATCHING]
    assert events[1].previous is DispatchState.REQUESTED and events[1].seq == 2


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ([], DispatchState.SPEAKING),  # requested cannot skip LiveKit
        ([DispatchState.DISPATCHING, DispatchState.FAILED], DispatchState.DISPATCHED),
        ([DispatchState.WAITING], DispatchState.ASSIGNED),
    ],
)
async def test_invalid_transition_refused(redis_client, keys, path, target):
    store = DispatchStore(redis_client, keys)
    request = _request()
    await store.create(request)
    for step in path:
        assert (await store.transition(request.dispatch_id, step)).applied
    before = await store.get(request.dispatch_id)
    result = await store.transition(request.dispatch_id, target)
    assert not result.applied
    after = await store.get(request.dispatch_id)
    assert before == after
    assert len(await store.events(request.dispatch_id)) == 1 + len(path)


async def test_unknown_dispatch_transition(redis_client, keys):
    store = DispatchStore(redis_client, keys)
    result = await store.transition("dsp_missing", DispatchState.DISPATCHING)
    assert not result.applied and result.previous is None


async def test_racing_transitions_have_one_winner(redis_client, keys):
    store = DispatchStore(redis_client, keys)
    request = _request()
    await store.create(request)
    await store.transition(request.dispatch_id, DispatchState.DISPATCHING)
    outcomes = await asyncio.gather(
        *(
            store.transition(
                request.dispatch_id, DispatchState.FAILED, reason=FailureReason.JOIN_TIMEOUT
            )
            for _ in range(10)
        ),
        *(store.transition(request.dispatch_id, DispatchState.CANCELLED) for _ in range(10)),
    )
    assert sum(o.applied for o in outcomes) == 1
    events = await store.events(request.dispatch_id)
    assert len(events) == 3


async def test_expected_version_guards_stale_writers(redis_client, keys):
    store = DispatchStore(redis_client, keys)
    request = _request()
    await store.create(request)
    ok = await store.transition(request.dispatch_id, DispatchState.DISPATCHING, expected_version=1)
    stale = await store.transition(
        request.dispatch_id, DispatchState.DISPATCHED, expected_version=1
    )
    assert ok.applied and not stale.applied


async def test_terminal_state_sets_ttl_and_leaves_the_deadlines(redis_client, keys):
    store = DispatchStore(redis_client, keys, terminal_ttl_seconds=120)
    request = _request()
    await store.create(request)
    assert await redis_client.ttl(keys.dispatch(request.dispatch_id)) == -1
    await redis_client.zadd(keys.deadlines, {request.dispatch_id: 1})
    await store.transition(
        request.dispatch_id, DispatchState.FAILED, reason=FailureReason.NO_WORKER_FOR_AGENT
    )
    assert 0 < await redis_client.ttl(keys.dispatch(request.dispatch_id)) <= 120
    assert 0 < await redis_client.ttl(keys.dispatch_events(request.dispatch_id)) <= 120
    assert await redis_client.zscore(keys.deadlines, request.dispatch_id) is None
    record = await store.get(request.dispatch_id)
    assert record and record.reason is FailureReason.NO_WORKER_FOR_AGENT
    events = await store.events(request.dispatch_id)
    assert events[-1].reason is FailureReason.NO_WORKER_FOR_AGENT
    assert events[-1].message and events[-1].hint


async def test_events_resume_after_id_and_wait(redis_client, keys):
    store = DispatchStore(redis_client, keys)
    request = _request()
    await store.create(request)
    first = await store.events(request.dispatch_id)
    waiter = asyncio.create_task(store.wait_events(request.dispatch_id, first[-1].event_id, 2000))
    await asyncio.sleep(0.05)
    await store.transition(request.dispatch_id, DispatchState.DISPATCHING)
    got = await waiter
    assert [e.state for e in got] == [DispatchState.DISPATCHING]
    resumed = await store.events(request.dispatch_id, after=first[-1].event_id)
    assert [e.event_id for e in resumed] == [got[0].event_id]


async def test_update_fields_does_not_resurrect(redis_client, keys):
    store = DispatchStore(redis_client, keys)
    assert not await store.update_fields("dsp_gone", {"queue_position": 3})
    assert not await redis_client.exists(keys.dispatch("dsp_gone"))
    request = _request()
    await store.create(request)
    assert await store.update_fields(request.dispatch_id, {"queue_position": 3})
    record = await store.get(request.dispatch_id)
    assert record and record.queue_position == 3


async def test_queue_update_appends_event_without_transition(redis_client, keys):
    store = DispatchStore(redis_client, keys)
    waiting, dispatching = _request("q-1"), _request("q-2")
    for request in (waiting, dispatching):
        await store.create(request)
    await store.transition(waiting.dispatch_id, DispatchState.WAITING)
    await store.transition(dispatching.dispatch_id, DispatchState.DISPATCHING)
    updated = await store.queue_updates(
        [(waiting.dispatch_id, 2, 90_000), (dispatching.dispatch_id, 1, 0)]
    )
    assert updated == 1
    record = await store.get(waiting.dispatch_id)
    assert record is not None
    assert (record.state, record.version) == (DispatchState.WAITING, 2)
    assert (record.queue_position, record.estimated_wait_ms) == (2, 90_000)
    events = await store.events(waiting.dispatch_id)
    assert [(e.state, e.kind) for e in events] == [
        (DispatchState.REQUESTED, "transition"),
        (DispatchState.WAITING, "transition"),
        (DispatchState.WAITING, "queue"),
    ]
    assert events[-1].detail == {"position": "2", "estimated_wait_ms": "90000"}
    assert events[-1].seq == 2
    # the dispatch that is no longer waiting got nothing
    assert len(await store.events(dispatching.dispatch_id)) == 2
    assert await store.queue_updates([]) == 0


async def test_transition_schedules_next_look_and_releases_a_held_key(redis_client, keys):
    store = DispatchStore(redis_client, keys)
    request = _request()
    await store.create(request)
    lease = f"{keys.prefix}:lease-test"
    await redis_client.set(lease, "mine")
    await store.transition(request.dispatch_id, DispatchState.DISPATCHING)
    refused = await store.transition(
        request.dispatch_id, DispatchState.ENDED, next_look_at_ms=111, release=(lease, "mine")
    )
    assert not refused.applied  # not applied: neither the deadline nor the key is touched
    assert await redis_client.zscore(keys.deadlines, request.dispatch_id) is None
    assert await redis_client.get(lease) == "mine"
    await store.transition(
        request.dispatch_id, DispatchState.DISPATCHED, next_look_at_ms=222, release=(lease, "other")
    )
    assert await redis_client.zscore(keys.deadlines, request.dispatch_id) == 222
    assert await redis_client.get(lease) == "mine"  # another holder's value: kept
    await store.transition(
        request.dispatch_id, DispatchState.ASSIGNED, next_look_at_ms=333, release=(lease, "mine")
    )
    assert await redis_client.zscore(keys.deadlines, request.dispatch_id) == 333
    assert await redis_client.get(lease) is None
    await store.transition(request.dispatch_id, DispatchState.FAILED, next_look_at_ms=444)
    assert await redis_client.zscore(keys.deadlines, request.dispatch_id) is None  # terminal
