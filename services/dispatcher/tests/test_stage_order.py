"""A signal that beats the create call's answer: the dispatched stage is still recorded."""

from __future__ import annotations

from harness import dispatcher_settings, free_port
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from agentline.ids import new_dispatch_id
from agentline.keys import Keys
from agentline.lifecycle import DispatchState
from agentline.schema import DispatchRequest
from agentline.store import DispatchStore
from dispatcher.service import DispatcherService
from dispatcher.signals import Signal, SignalKind, Source


async def test_an_early_signal_keeps_every_stage_in_order(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    # Not started: only its tracker is used (no LiveKit, no consumer racing the test).
    settings = dispatcher_settings(redis_url, keys, "http://127.0.0.1:1", free_port())
    service = DispatcherService(settings, CollectorRegistry())
    store = DispatchStore(redis_client, keys)
    try:
        dispatch_id = new_dispatch_id()
        request = DispatchRequest(dispatch_id=dispatch_id, room="room-early", agent_name="a")
        await store.create(request)
        await store.transition(dispatch_id, DispatchState.DISPATCHING)
        assigned = Signal(
            SignalKind.ASSIGNED, Source.WORKER, dispatch_id=dispatch_id, job_id="AJ_1"
        )
        assert await service.tracker.apply(assigned) == (dispatch_id, DispatchState.ASSIGNED)
        events = await store.events(dispatch_id)
        assert [e.state.value for e in events] == [
            "requested",
            "dispatching",
            "dispatched",
            "assigned",
        ]
        record = await store.get(dispatch_id)
        assert record is not None and record.job_id == "AJ_1"
        # The create step's own move comes too late and changes nothing.
        late = await store.transition(dispatch_id, DispatchState.DISPATCHED)
        assert not late.applied and late.previous is DispatchState.ASSIGNED
    finally:
        await service.gateway.aclose()
