"""Stage timeouts and retries: look once more, then re-dispatch (not_assigned, join_timeout)
with the old LiveKit dispatch deleted and no agent of ours left in the room, or fail."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agentline.ids import now_ms
from agentline.lifecycle import DispatchState, FailureReason
from agentline.schema import DispatchRecord
from dispatcher.context import LeaseLost, backoff_seconds, dispatch_span
from dispatcher.engine import Engine, is_our_agent
from dispatcher.livekit_gateway import AgentParticipant, ErrorKind, LiveKitError
from dispatcher.overhead import io

REMOVE_AGENT_TRIES = 3

ApplyPresence = Callable[[DispatchRecord, list[AgentParticipant]], Awaitable[None]]
RoomOrAgentGone = Callable[[DispatchRecord, str], Awaitable[DispatchState | None]]


class StageRetries:
    def __init__(
        self, engine: Engine, apply_presence: ApplyPresence, room_or_agent_gone: RoomOrAgentGone
    ) -> None:
        self.engine = engine
        self.ctx = engine.ctx
        self._apply_presence = apply_presence  # an agent that did join is adopted
        self._room_or_agent_gone = room_or_agent_gone

    async def stage_failed(self, record: DispatchRecord, why: str) -> None:
        """The current stage timed out (or the worker said it failed): look once more, then
        retry (not_assigned, join_timeout) or fail (no_audio, no_worker_for_agent)."""
        ctx = self.ctx
        if not await io(ctx.leases.acquire(record.id, ctx.lease_ms)):
            await io(ctx.deadlines.schedule(record.id, now_ms() + 500))
            return
        try:
            await self._stage_failed_locked(record, why)
        except LeaseLost:
            return
        finally:
            await io(ctx.leases.release(record.id))

    async def _stage_failed_locked(self, record: DispatchRecord, why: str) -> None:
        ctx, engine = self.ctx, self.engine
        try:
            agents = await engine.call(record.id, lambda: ctx.gateway.agents_in_room(record.room))
        except LiveKitError as error:
            if error.kind is ErrorKind.ROOM_GONE:
                await self._room_or_agent_gone(record, "timer")
            else:
                await engine.fail(record, reason_of(error), "timer", error_detail(error))
            return
        ours = [a for a in agents if is_our_agent(a.agent_name, record)]
        if record.state is DispatchState.JOINED:
            mine = [
                a for a in ours if a.identity == record.agent_identity or not record.agent_identity
            ]
            if any(a.has_audio for a in mine):
                await self._apply_presence(record, mine)
                return
            result = await engine.fail(record, FailureReason.NO_AUDIO, "timer", _why(why))
            if result.applied:
                # A silent agent would hold its worker's slot (until its own caller wait runs
                # out) and stay in a room whose owner is now free: a re-invite would make two.
                await engine.remove_from_livekit(record)
            return
        if ours:  # it did join and we missed the signal
            await self._apply_presence(record, ours)
            return
        reason = (
            FailureReason.NOT_ASSIGNED
            if record.state is DispatchState.DISPATCHED
            else FailureReason.JOIN_TIMEOUT
        )
        if reason is FailureReason.NOT_ASSIGNED and not await ctx.served.serves(record.agent_name):
            names = ",".join(await ctx.served.names())
            detail = {"agent_name": record.agent_name, "served_agent_names": names or "(none)"}
            if await self._failed(record, FailureReason.NO_WORKER_FOR_AGENT, detail):
                await engine.remove_from_livekit(record)
            return
        attempts = max(record.attempts, 1)
        if attempts >= ctx.settings.max_attempts:
            final = reason if ctx.settings.max_attempts == 1 else FailureReason.RETRIES_EXHAUSTED
            detail = {"last_failure": reason.value, "attempts": str(attempts), **_why(why)}
            if await self._failed(record, final, detail):
                await engine.remove_from_livekit(record)
            return
        await self.redispatch(record, reason, attempts + 1)

    async def _failed(
        self, record: DispatchRecord, reason: FailureReason, detail: dict[str, str]
    ) -> bool:
        result = await self.engine.fail(record, reason, "timer", detail, record.version)
        return result.applied

    async def redispatch(self, record: DispatchRecord, reason: FailureReason, attempt: int) -> None:
        ctx = self.ctx
        result = await self.engine.move(
            record,
            DispatchState.DISPATCHING,
            "timer",
            fields={"attempts": attempt, "error_detail": f"attempt {attempt - 1}: {reason.value}"},
            detail={"retry_after": reason.value, "attempt": str(attempt)},
            expected_version=record.version,
        )
        if not result.applied:
            return
        ctx.metrics.retries.labels(reason.value).inc()
        record.state, record.version = DispatchState.DISPATCHING, result.version
        # No worker accepted: keep the slot for the retry (extended), or, if it expired and
        # was taken, wait at the head of the queue.
        if not await self.engine.admitter.admit(record):
            return
        await io(ctx.deadlines.schedule(record.id, now_ms() + ctx.lease_ms))
        await asyncio.sleep(backoff_seconds(ctx.settings.retry_backoff_seconds, attempt - 2))
        with dispatch_span(record, "dispatcher.redispatch"):
            if await self.prepare_room(record, attempt):
                await self.engine.attempt(record, attempt, look_first=False)

    async def prepare_room(self, record: DispatchRecord, attempt: int) -> bool:
        """Before a re-dispatch: delete the old LiveKit dispatch, and make sure (ListParticipants)
        that no agent of ours is in the room. False when the dispatch failed meanwhile."""
        ctx, engine, gw = self.ctx, self.engine, self.ctx.gateway
        try:
            if record.livekit_dispatch_id:
                await engine.call(
                    record.id, lambda: gw.delete_dispatch(record.livekit_dispatch_id, record.room)
                )
            for _ in range(REMOVE_AGENT_TRIES):
                agents = await engine.call(record.id, lambda: gw.agents_in_room(record.room))
                ours = [a for a in agents if is_our_agent(a.agent_name, record)]
                if not ours:
                    return True
                for agent in ours:
                    identity = agent.identity
                    await engine.call(
                        record.id,
                        lambda identity=identity: gw.remove_participant(record.room, identity),  # type: ignore[misc]
                    )
        except LiveKitError as error:
            if error.kind is ErrorKind.ROOM_GONE:
                await engine.fail(record, FailureReason.ROOM_GONE, "timer")
            else:
                await engine.fail(record, reason_of(error), "timer", error_detail(error))
            await io(ctx.leases.release(record.id))
            return False
        detail = {"attempt": str(attempt), "error": "an agent of ours stays in the room"}
        await engine.fail(record, FailureReason.RETRIES_EXHAUSTED, "timer", detail)
        return False


def reason_of(error: LiveKitError) -> FailureReason:
    from dispatcher.engine import REASON_BY_KIND

    return REASON_BY_KIND[error.kind]


def error_detail(error: LiveKitError) -> dict[str, str]:
    return {"method": error.method, "status": str(error.status), "code": error.code}


def _why(why: str) -> dict[str, str]:
    return {"why": why} if why else {}
