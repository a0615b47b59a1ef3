"""Tracking a dispatch after LiveKit accepted it: signals, polls, stage timeouts, retries and
cancel. Any replica can apply any of these to any dispatch: all state is in Redis."""

from __future__ import annotations

from agentline.ids import now_ms
from agentline.lifecycle import PROGRESS, DispatchState, FailureReason, is_terminal
from agentline.logs import get_logger
from agentline.schema import DispatchRecord
from dispatcher.context import LeaseLost, dispatch_span
from dispatcher.engine import Engine, is_our_agent
from dispatcher.intake import resume_requested, start_waiting
from dispatcher.livekit_gateway import AgentParticipant, ErrorKind, LiveKitError
from dispatcher.overhead import io
from dispatcher.retries import StageRetries
from dispatcher.signals import Signal, SignalKind, Source

log = get_logger("dispatcher.tracking")

_RANK = {state: index for index, state in enumerate(PROGRESS)}
_TARGET = {
    SignalKind.ASSIGNED: DispatchState.ASSIGNED,
    SignalKind.JOINED: DispatchState.JOINED,
    SignalKind.SPEAKING: DispatchState.SPEAKING,
}
_TRACKED = (DispatchState.DISPATCHED, DispatchState.ASSIGNED, DispatchState.JOINED)
_BEFORE_JOIN = (DispatchState.DISPATCHING, DispatchState.DISPATCHED, DispatchState.ASSIGNED)
# A speaking dispatch is only checked now and then (its end normally comes as a signal).
SPEAKING_POLL_MS = 30_000


def _forward(current: DispatchState, target: DispatchState) -> bool:
    return _RANK.get(target, -1) > _RANK.get(current, 99)


class Tracker:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ctx = engine.ctx
        self.retries = StageRetries(engine, self._apply_presence, self.room_or_agent_gone)

    # -- signals ----------------------------------------------------------------------------
    async def apply(self, signal: Signal) -> tuple[str, DispatchState | None]:
        """Apply a signal: the dispatch it concerns ('' if none) and the state it moved to."""
        ctx = self.ctx
        dispatch_id: str | None = signal.dispatch_id
        record = None
        if not dispatch_id:
            # The room's owner rarely changes (only after its dispatch ended): known owners
            # are re-read when the known dispatch turns out to be over.
            dispatch_id = ctx.rooms.known.get(signal.room)
            if dispatch_id is not None:
                record = await io(ctx.store.get(dispatch_id))
                if record is None or record.is_terminal:
                    dispatch_id = record = None
            if dispatch_id is None:
                dispatch_id = await io(ctx.rooms.owner(signal.room))
                if dispatch_id:
                    ctx.rooms.remember(signal.room, dispatch_id)
        if record is None and dispatch_id:
            record = await io(ctx.store.get(dispatch_id))
        moved = None
        worker_end = signal.source is Source.WORKER and signal.kind in (
            SignalKind.JOB_ENDED,
            SignalKind.JOB_FAILED,
        )
        if record is not None and not record.is_terminal:
            moved = await self._apply_to(record, signal)
            if moved is None and worker_end and dispatch_id:
                # A LiveKit signal ended it while we applied this: the slot waits for us.
                record = await io(ctx.store.get(dispatch_id))
                if record is not None and record.is_terminal:
                    await self.engine.admitter.worker_job_over(record)
        elif record is not None and worker_end:
            await self.engine.admitter.worker_job_over(record)  # its slot is free now
        ctx.metrics.signals.labels(signal.source.value, "yes" if moved else "no").inc()
        return dispatch_id or "", moved

    async def _apply_to(self, record: DispatchRecord, signal: Signal) -> DispatchState | None:
        state = record.state
        kind = signal.kind
        if kind is SignalKind.ROOM_FINISHED or (
            kind is SignalKind.AGENT_LEFT and signal.agent_identity == record.agent_identity
        ):
            return await self.room_or_agent_gone(record, signal.source.value)
        if kind is SignalKind.JOB_ENDED and state in (DispatchState.JOINED, DispatchState.SPEAKING):
            return await self._moved(record, DispatchState.ENDED, signal.source.value)
        if kind in (SignalKind.JOB_ENDED, SignalKind.JOB_FAILED):
            if state in (DispatchState.DISPATCHED, DispatchState.ASSIGNED):
                await self.retries.stage_failed(record, f"worker reported: {signal.detail}")
            return None
        target = _TARGET.get(kind)
        if target is None:
            return None
        fields: dict[str, str] = {}
        if kind is SignalKind.ASSIGNED:
            fields = {"job_id": signal.job_id, "worker_id": signal.worker_id}
        if signal.source is Source.WORKER and not record.worker_reports:
            fields["worker_reports"] = "1"  # its end will come as a worker event too
        if kind in (SignalKind.JOINED, SignalKind.SPEAKING) and signal.agent_identity:
            if signal.agent_name and not is_our_agent(signal.agent_name, record):
                return None
            known = record.agent_identity
            if known and known != signal.agent_identity:
                if kind is SignalKind.JOINED and signal.source is not Source.WORKER:
                    await self._remove_second_agent(record, signal.agent_identity)
                return None
            if not known and kind is SignalKind.SPEAKING and signal.source is Source.WEBHOOK:
                return None  # whose track? only the join tells; polling will see it
            fields["agent_identity"] = signal.agent_identity
        if signal.job_id and kind is not SignalKind.ASSIGNED:
            fields["job_id"] = signal.job_id
        if not _forward(state, target):
            return None
        if state is DispatchState.DISPATCHING:
            # The job reached a worker (or its agent the room) before LiveKit's answer to our
            # create call reached us: LiveKit took the dispatch, so the timeline records that
            # stage too. If the create step records it first, this move is simply refused.
            await self._moved(record, DispatchState.DISPATCHED, signal.source.value)
        return await self._moved(record, target, signal.source.value, fields)

    async def _moved(
        self,
        record: DispatchRecord,
        target: DispatchState,
        source: str,
        fields: dict[str, str] | None = None,
        reason: FailureReason | None = None,
    ) -> DispatchState | None:
        # Speaking: only the slow end-of-call check remains (saves the poll visit).
        next_look = SPEAKING_POLL_MS if target is DispatchState.SPEAKING else None
        result = await self.engine.move(
            record, target, source, fields=fields, reason=reason, next_look_in_ms=next_look
        )
        return target if result.applied else None

    async def room_or_agent_gone(self, record: DispatchRecord, source: str) -> DispatchState | None:
        """Room finished (or our agent left): ``ended`` once joined, ``room_gone`` before."""
        if record.state in (DispatchState.JOINED, DispatchState.SPEAKING):
            return await self._moved(record, DispatchState.ENDED, source)
        if record.state in (*_BEFORE_JOIN, DispatchState.REQUESTED):
            result = await self.engine.fail(record, FailureReason.ROOM_GONE, source)
            return DispatchState.FAILED if result.applied else None
        return None

    async def _remove_second_agent(self, record: DispatchRecord, identity: str) -> None:
        """Never two agents in one room: a second agent of ours (a late job of an earlier
        attempt) is removed."""
        log.warning("second agent in room, removing it", dispatch_id=record.id, identity=identity)
        try:
            await self.ctx.gateway.remove_participant(record.room, identity)
        except LiveKitError as error:
            log.warning("could not remove second agent", dispatch_id=record.id, error=str(error))

    # -- the deadline scanner's visit -----------------------------------------------------------
    async def visit(self, dispatch_id: str) -> None:
        ctx = self.ctx
        record = await io(ctx.store.get(dispatch_id))
        if record is None or record.is_terminal:
            await io(ctx.deadlines.clear(dispatch_id))
            return
        if record.state is DispatchState.WAITING:
            # Its periodic look: its place, the wait bound, or start it if it was admitted.
            await start_waiting(self.engine, dispatch_id)
            return
        if record.state is DispatchState.REQUESTED:
            # Its stream entry was acked by a replica that died before dispatching it.
            await resume_requested(self.engine, record)
            return
        now = now_ms()
        if record.state is DispatchState.DISPATCHING:
            await self.resume_dispatching(record)
            return
        if record.state is DispatchState.SPEAKING:
            due = record.timestamps.get("speaking", now) + SPEAKING_POLL_MS
            if now >= due:
                await self._poll_speaking(record)
                due = now + SPEAKING_POLL_MS
            await io(ctx.deadlines.schedule(dispatch_id, due))
            return
        stage_deadline = record.timestamps.get(record.state.value, now) + (
            ctx.stage_timeout_ms(record.state) or 0
        )
        if now >= stage_deadline:
            await self.retries.stage_failed(record, "")
            return
        await self.poll(record)
        await io(ctx.deadlines.schedule(dispatch_id, min(now + ctx.poll_ms, stage_deadline)))

    async def resume_dispatching(self, record: DispatchRecord) -> None:
        """The replica that was creating it died (its lease expired): carry on where it was."""
        ctx = self.ctx
        if not await io(ctx.leases.acquire(record.id, ctx.lease_ms)):
            remaining = max(await io(ctx.leases.remaining_ms(record.id)), 100)
            await io(ctx.deadlines.schedule(record.id, now_ms() + remaining))
            return
        log.info("resuming dispatch", dispatch_id=record.id, attempt=record.attempts)
        await io(ctx.deadlines.schedule(record.id, now_ms() + ctx.lease_ms))
        try:
            if not await self.engine.admitter.admit(record):  # keeps (extends) its slot
                return
            attempt = max(record.attempts, 1)
            if attempt > 1 and not await self.retries.prepare_room(record, attempt):
                return
            with dispatch_span(record, "dispatcher.resume"):
                await self.engine.attempt(record, attempt, look_first=True)
        except LeaseLost:
            return
        finally:
            await io(ctx.leases.release(record.id))

    # -- polling (fallback signal source) -------------------------------------------------
    async def poll(self, record: DispatchRecord) -> None:
        gw = self.ctx.gateway
        try:
            if record.state is DispatchState.DISPATCHED:
                listed = await gw.list_dispatches(record.room)
                mine = next(
                    (d for d in listed if d.dispatch_id == record.livekit_dispatch_id), None
                )
                if mine is not None and mine.job_id:
                    signal = Signal(
                        SignalKind.ASSIGNED,
                        Source.POLL,
                        dispatch_id=record.id,
                        job_id=mine.job_id,
                        worker_id=mine.worker_id,
                    )
                    if await self._apply_to(record, signal):
                        fresh = await io(self.ctx.store.get(record.id))
                        record = fresh or record
                    else:
                        return
                else:
                    return
            agents = await gw.agents_in_room(record.room)
        except LiveKitError as error:
            if error.kind is ErrorKind.ROOM_GONE:
                await self.room_or_agent_gone(record, Source.POLL.value)
            else:
                log.warning("poll failed", dispatch_id=record.id, error=str(error))
            return
        await self._apply_presence(record, agents)

    async def _apply_presence(self, record: DispatchRecord, agents: list[AgentParticipant]) -> None:
        ours = [a for a in agents if is_our_agent(a.agent_name, record)]
        if not ours:
            return
        chosen = next((a for a in ours if a.identity == record.agent_identity), ours[0])
        for extra in ours:
            if extra.identity != chosen.identity:
                await self._remove_second_agent(record, extra.identity)
        kind = SignalKind.SPEAKING if chosen.has_audio else SignalKind.JOINED
        signal = Signal(
            kind,
            Source.POLL,
            dispatch_id=record.id,
            agent_identity=chosen.identity,
            participant_sid=chosen.sid,
            agent_name=chosen.agent_name,
        )
        if record.state is not DispatchState.JOINED and kind is SignalKind.SPEAKING:
            # Record the join on the way, so the stages stay readable.
            joined = Signal(
                SignalKind.JOINED, Source.POLL, record.id, agent_identity=chosen.identity
            )
            if await self._apply_to(record, joined):
                fresh = await io(self.ctx.store.get(record.id))
                record = fresh or record
        await self._apply_to(record, signal)

    async def _poll_speaking(self, record: DispatchRecord) -> None:
        try:
            agents = await self.ctx.gateway.agents_in_room(record.room)
        except LiveKitError as error:
            if error.kind is ErrorKind.ROOM_GONE:
                await self.room_or_agent_gone(record, Source.POLL.value)
            return
        if not any(a.identity == record.agent_identity for a in agents):
            await self.room_or_agent_gone(record, Source.POLL.value)

    # -- cancel -----------------------------------------------------------------------------
    async def cancel(self, dispatch_id: str) -> bool:
        """token-api already moved the record to ``cancelled``: remove the LiveKit dispatch and
        the agent. A CreateDispatch racing this is undone by its owner (the record is terminal)."""
        ctx = self.ctx
        record = await io(ctx.store.get(dispatch_id))
        if record is None or record.state is not DispatchState.CANCELLED:
            return False
        await self.engine.admitter.cancelled(record)  # its slot or its place goes back first
        if DispatchState.DISPATCHING.value in record.timestamps:  # else nothing in LiveKit
            await self.engine.remove_from_livekit(record)
        await io(ctx.deadlines.clear(dispatch_id))
        await io(ctx.rooms.release(record.room, dispatch_id))
        return True


__all__ = ["Tracker", "is_terminal"]
