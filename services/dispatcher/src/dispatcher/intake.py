"""A new dispatch request: check the registry, claim the room and the dispatch, then make the
first attempt. A redelivered request finds its record and resumes from its state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agentline.ids import now_ms
from agentline.lifecycle import DispatchState, FailureReason
from agentline.logs import get_logger
from agentline.schema import DispatchRecord, DispatchRequest

from dispatcher.engine import Engine, LeaseBusy, LeaseLost, dispatch_span
from dispatcher.overhead import io
from dispatcher.registry_check import wait_for_worker

log = get_logger("dispatcher.intake")


async def start_dispatch(
    engine: Engine, request: DispatchRequest, settle: Callable[[], Awaitable[None]]
) -> None:
    """``settle`` acks the stream entry: called as soon as the dispatch is ``dispatching``
    (from then on its lease and deadline resume it after a crash, so the entry is no longer
    needed and cannot be taken over by another replica while LiveKit calls are slow)."""
    ctx = engine.ctx
    record = await io(ctx.store.get(request.dispatch_id))
    if record is None:
        log.warning("request without a record (expired?)", dispatch_id=request.dispatch_id)
        return
    if record.state is not DispatchState.REQUESTED:
        if not record.is_terminal:
            # Redelivered after a crash: the deadlines resume it from its state.
            await io(ctx.deadlines.schedule(record.id, now_ms(), only_if_absent=True))
        return
    at = now_ms()
    requested_at = record.timestamps.get("requested", at)
    ctx.metrics.stage_latency.labels("queue_wait", "none").observe(max(0, at - requested_at) / 1000)
    settings = ctx.settings
    if not record.room or not record.agent_name:
        detail = {"error": "room and agent_name must not be empty"}
        await engine.fail(record, FailureReason.LIVEKIT_REJECTED, "intake", detail, record.version)
        return
    if not await wait_for_worker(
        ctx.served, record.agent_name, settings.registry_policy, settings.registry_wait_seconds
    ):
        names = ",".join(await ctx.served.names())
        detail = {"agent_name": record.agent_name, "served_agent_names": names or "(none)"}
        await engine.fail(
            record, FailureReason.NO_WORKER_FOR_AGENT, "registry", detail, record.version
        )
        return
    # Lease (so no scanner resumes us), room ownership and a resume deadline, in one trip.
    async with ctx.redis.pipeline(transaction=False) as pipe:
        ctx.leases.acquire_in(pipe, record.id, ctx.lease_ms)
        ctx.rooms.claim_in(pipe, record.room, record.id)
        ctx.deadlines.schedule_in(pipe, record.id, now_ms() + ctx.lease_ms)
        leased, room_claimed, _ = await io(pipe.execute())
    if not leased:
        # Another replica holds it: it moves it on, or it died and its lease runs out.
        waited = await _wait_for_lease(engine, record)
        if waited is None:
            return
        record = waited
    if not room_claimed and not await _take_room(engine, record):
        await ctx.leases.release(record.id)
        return
    # The version we read as `requested`: a replica that read it late (its entry was taken
    # over meanwhile) must not move an already dispatched record back to dispatching.
    result = await engine.move(
        record,
        DispatchState.DISPATCHING,
        "intake",
        fields={"attempts": 1},
        expected_version=record.version,
    )
    if not result.applied:
        await ctx.leases.release(record.id)
        return
    await settle()
    try:
        with dispatch_span(record, "dispatcher.dispatch"):
            await engine.attempt(record, 1, look_first=False)
    except LeaseLost:
        log.warning("lease lost while dispatching", dispatch_id=record.id)


async def _wait_for_lease(engine: Engine, record: DispatchRecord) -> DispatchRecord | None:
    """Wait until the lease is ours (the record still ``requested``), or someone else moved the
    dispatch on (None). Bounded by one lease period."""
    ctx = engine.ctx
    deadline = now_ms() + ctx.lease_ms + 1000
    while now_ms() < deadline:
        remaining = await io(ctx.leases.remaining_ms(record.id))
        await asyncio.sleep(min(max(remaining, 50), 500) / 1000)
        fresh = await io(ctx.store.get(record.id))
        if fresh is None or fresh.state is not DispatchState.REQUESTED:
            return None
        if await io(ctx.leases.acquire(record.id, ctx.lease_ms)):
            return fresh
    raise LeaseBusy(record.id)


async def _take_room(engine: Engine, record: DispatchRecord) -> bool:
    """The room has an owner: take it over if that dispatch is over, else refuse (one agent
    per room)."""
    ctx = engine.ctx
    owner = await io(ctx.rooms.owner(record.room))
    if owner is None:
        return await io(ctx.rooms.claim(record.room, record.id))
    if owner == record.id:
        return True
    previous = await io(ctx.store.get(owner))
    if previous is None or previous.is_terminal:
        return await io(ctx.rooms.take_over(record.room, owner, record.id))
    detail = {"error": f"room {record.room} already has dispatch {owner} ({previous.state})"}
    await engine.fail(record, FailureReason.LIVEKIT_REJECTED, "intake", detail, record.version)
    return False
