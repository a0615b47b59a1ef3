"""A new dispatch request: check the registry, claim the room and the dispatch, then make the
first attempt.

One pipelined round trip reads the record, takes the dispatch's lease, claims the room, sets a
resume deadline and acks the stream entry: from then on the deadline (not the stream entry)
guarantees that the request is processed, by this replica or, if it dies, by whichever
replica's scanner sees the deadline due (``resume_requested``). A redelivered request finds
its record and leaves it to its state.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio.client import Pipeline

from agentline.admission import Admission, AdmitResult, OwnedRequest
from agentline.ids import now_ms
from agentline.lifecycle import DispatchState, FailureReason
from agentline.logs import get_logger
from agentline.schema import DispatchRecord, DispatchRequest
from dispatcher.context import LeaseLost, dispatch_span
from dispatcher.engine import Engine
from dispatcher.overhead import io
from dispatcher.registry_check import passes_at_once, wait_for_worker

log = get_logger("dispatcher.intake")


async def start_dispatch(
    engine: Engine, request: DispatchRequest, ack_in: Callable[[Pipeline], object]
) -> None:
    ctx = engine.ctx
    dispatch_id = request.dispatch_id
    # The slot in the same round trip when the registry check will pass without a read.
    early = engine.admitter.admission if _passes_at_once(engine, request) else None
    async with ctx.hot_redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(ctx.keys.dispatch(dispatch_id))
        token = ctx.leases.acquire_in(pipe, dispatch_id, ctx.lease_ms)
        ctx.rooms.claim_in(pipe, request.room, dispatch_id)
        # NX: a redelivered request keeps the deadline its stage already has.
        pipe.zadd(ctx.keys.deadlines, {dispatch_id: now_ms() + ctx.lease_ms}, nx=True)
        ack_in(pipe)
        if early is not None:  # it runs only if the lease and the room are ours
            owned = OwnedRequest(
                lease_key=ctx.leases.key(dispatch_id),
                lease_token=token,
                room_key=ctx.keys.room_dispatch(request.room),
                record_key=ctx.keys.dispatch(dispatch_id),
                new_state=DispatchState.REQUESTED.value,
            )
            await early.try_admit_in(pipe, dispatch_id, request.agent_name, owned)
        replies = await io(pipe.execute())
    raw, leased, room_claimed = replies[:3]
    admitted = Admission.admitted_from(replies[-1]) if early is not None else None
    leased = ctx.leases.acquired(dispatch_id, token, leased)
    record = DispatchRecord.from_hash(raw) if raw else None
    if record is None or record.state is not DispatchState.REQUESTED:
        if record is None:
            log.warning("request without a record (expired?)", dispatch_id=dispatch_id)
            await io(ctx.deadlines.clear(dispatch_id))
        if leased:
            await io(ctx.leases.release(dispatch_id))
        return
    if not leased:
        return  # another replica holds it; if it dies, the deadline brings it back
    if not room_claimed and not await _take_room(engine, record):
        await io(ctx.leases.release(dispatch_id))
        return
    ctx.rooms.remember(record.room, dispatch_id)
    await first_attempt(engine, record, admitted)


def _passes_at_once(engine: Engine, request: DispatchRequest) -> bool:
    """Whether ``_checked`` will pass without a read."""
    ctx = engine.ctx
    return bool(request.room and request.agent_name) and passes_at_once(
        ctx.served, request.agent_name, ctx.settings.registry_policy
    )


async def resume_requested(engine: Engine, record: DispatchRecord) -> None:
    """The scanner found a ``requested`` dispatch whose replica died after acking it."""
    ctx = engine.ctx
    if not await io(ctx.leases.acquire(record.id, ctx.lease_ms)):
        remaining = max(await io(ctx.leases.remaining_ms(record.id)), 100)
        await io(ctx.deadlines.schedule(record.id, now_ms() + remaining))
        return
    log.info("resuming requested dispatch", dispatch_id=record.id)
    await io(ctx.deadlines.schedule(record.id, now_ms() + ctx.lease_ms))
    if not await io(ctx.rooms.claim(record.room, record.id)) and not await _take_room(
        engine, record
    ):
        await io(ctx.leases.release(record.id))
        return
    await first_attempt(engine, record)


async def first_attempt(
    engine: Engine, record: DispatchRecord, admitted: AdmitResult | None = None
) -> None:
    """We hold the lease of a ``requested`` (or ``waiting``) dispatch: registry check, a slot
    (capacity-aware admission: or a place in the queue), then attempt 1. ``admitted``: the
    admission already tried in the intake round trip. Should the registry check fail after
    all, the failure gives the slot back like any other."""
    ctx = engine.ctx
    try:
        if record.state is DispatchState.REQUESTED and not await _checked(engine, record):
            return
        if not await engine.admitter.admit(record, admitted):
            return  # waiting for a slot (or failed no_capacity, or gone)
        fields: dict[str, int] = {"attempts": 1}
        if record.state is DispatchState.WAITING:
            fields.update(queue_position=0, estimated_wait_ms=0)
            # resumed by the scanner if this replica dies from here on
            await io(ctx.deadlines.schedule(record.id, now_ms() + ctx.lease_ms))
        # The version we read (requested or waiting): a replica that read it late must not
        # move an already dispatched record back to dispatching.
        result = await engine.move(
            record,
            DispatchState.DISPATCHING,
            "intake",
            fields=fields,
            expected_version=record.version,
        )
        if not result.applied:
            return
        with dispatch_span(record, "dispatcher.dispatch"):
            await engine.attempt(record, 1, look_first=False)
    except LeaseLost:
        log.warning("lease lost while dispatching", dispatch_id=record.id)
    finally:
        await ctx.leases.release(record.id)  # a no-op once the attempt released it


async def _checked(engine: Engine, record: DispatchRecord) -> bool:
    """A new request: names present, and a live worker serves the agent_name (registry
    policy). False: it failed."""
    ctx = engine.ctx
    at = now_ms()
    requested_at = record.timestamps.get("requested", at)
    ctx.metrics.stage_latency.labels("queue_wait", "none").observe(max(0, at - requested_at) / 1000)
    if not record.room or not record.agent_name:
        detail = {"error": "room and agent_name must not be empty"}
        await engine.fail(record, FailureReason.LIVEKIT_REJECTED, "intake", detail, record.version)
        return False
    settings = ctx.settings

    async def keep_lease() -> bool:
        return await ctx.leases.renew(record.id, ctx.lease_ms)

    if await wait_for_worker(
        ctx.served,
        record.agent_name,
        settings.registry_policy,
        settings.registry_wait_seconds,
        keep_lease,
    ):
        return True
    names = ",".join(await ctx.served.names())
    detail = {"agent_name": record.agent_name, "served_agent_names": names or "(none)"}
    await engine.fail(record, FailureReason.NO_WORKER_FOR_AGENT, "registry", detail, record.version)
    return False


async def start_waiting(engine: Engine, dispatch_id: str) -> None:
    """A ``waiting`` dispatch: admitted in place of one that left (start it now), or due for
    its periodic look (its place, the wait bound). Single owner through the lease."""
    ctx = engine.ctx
    if not await io(ctx.leases.acquire(dispatch_id, ctx.lease_ms)):
        # Another holder: if it was queueing it, it looks once more before it lets go.
        await io(ctx.deadlines.schedule(dispatch_id, now_ms() + 200))
        return
    record = await io(ctx.store.get(dispatch_id))  # read under the lease: current version
    if record is not None and record.is_terminal:
        # Cancelled (or failed) before a dispatcher took it out of the queue: the slot it
        # was just given goes to the next one.
        await io(ctx.leases.release(dispatch_id))
        await engine.admitter.release(dispatch_id, record.agent_name, queue_moved=True)
        return
    if record is None or record.state is not DispatchState.WAITING:
        # requested: its intake owner or the resume deadline goes on with it; past waiting:
        # nothing to do.
        await io(ctx.leases.release(dispatch_id))
        return
    await first_attempt(engine, record)


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
