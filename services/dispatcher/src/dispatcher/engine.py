"""Getting an agent into a room: the first attempt, a resumed attempt and a re-dispatch.

Every step that changes LiveKit holds the dispatch's lease (``timers.Leases``) and keeps a
deadline in Redis, so a replica that dies mid-step is resumed by another replica's scanner,
and two replicas never create a dispatch for the same attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from agentline.ids import now_ms
from agentline.lifecycle import DispatchState, FailureReason, is_terminal, reason_info
from agentline.logs import get_logger
from agentline.schema import DispatchKind, DispatchMetadata, DispatchPath, DispatchRecord
from agentline.store import TransitionResult
from agentline.telemetry import inject_context
from dispatcher.admission_flow import Admitter
from dispatcher.context import Context, LeaseLost, backoff_seconds
from dispatcher.livekit_gateway import ErrorKind, LiveKitError
from dispatcher.overhead import io

log = get_logger("dispatcher.engine")
T = TypeVar("T")

# LiveKit unreachable (transport error, timeout, 5xx) is retried this many times per call,
# with exponential backoff from DISPATCHER_RETRY_BACKOFF_SECONDS, before livekit_unreachable.
LIVEKIT_CALL_TRIES = 5
OWN_TRACKED_MAX = 50_000

REASON_BY_KIND: dict[ErrorKind, FailureReason] = {
    ErrorKind.UNREACHABLE: FailureReason.LIVEKIT_UNREACHABLE,
    ErrorKind.AUTH: FailureReason.LIVEKIT_AUTH,
    ErrorKind.REJECTED: FailureReason.LIVEKIT_REJECTED,
    ErrorKind.NOT_FOUND: FailureReason.LIVEKIT_REJECTED,
    ErrorKind.ROOM_GONE: FailureReason.ROOM_GONE,
}

STAGE_FROM: dict[DispatchState, tuple[str, DispatchState]] = {
    DispatchState.ASSIGNED: ("dispatched_to_assigned", DispatchState.DISPATCHED),
    DispatchState.JOINED: ("assigned_to_joined", DispatchState.ASSIGNED),
    DispatchState.SPEAKING: ("joined_to_speaking", DispatchState.JOINED),
}


def find_attempt(listed: list[Any], dispatch_id: str, attempt: int) -> Any | None:
    """The LiveKit dispatch whose metadata names this dispatch and attempt."""
    for row in listed:
        try:
            meta = msgspec.json.decode(row.metadata, type=DispatchMetadata)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if meta.dispatch_id == dispatch_id and meta.attempt == attempt:
            return row
    return None


class Engine:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Own time per dispatch in this process: [seconds, request step done, speaking seen];
        # observed once both are true (bounded: entries of dispatches that never speak here
        # are dropped when the map is full).
        self.own_by_dispatch: dict[str, list[float]] = {}
        self.admitter = Admitter(self, ctx.admission)

    def _own_entry(self, dispatch_id: str) -> list[float]:
        entry = self.own_by_dispatch.get(dispatch_id)
        if entry is None:
            if len(self.own_by_dispatch) >= OWN_TRACKED_MAX:
                self.own_by_dispatch.clear()
            entry = self.own_by_dispatch[dispatch_id] = [0.0, 0.0, 0.0]
        return entry

    def account(
        self, dispatch_id: str, seconds: float, *, request: bool, speaking: bool = False
    ) -> None:
        """Add a step's own time; observed once the request step is done and it speaks."""
        entry = self._own_entry(dispatch_id)
        entry[0] += seconds
        entry[1] = entry[1] or float(request)
        entry[2] = entry[2] or float(speaking)
        if entry[1] and entry[2]:
            self.ctx.metrics.own_latency.observe(entry[0])
            del self.own_by_dispatch[dispatch_id]

    # -- transitions ------------------------------------------------------------------------
    async def move(
        self,
        record: DispatchRecord,
        target: DispatchState,
        source: str,
        *,
        reason: FailureReason | None = None,
        fields: dict[str, Any] | None = None,
        detail: dict[str, str] | None = None,
        expected_version: int | None = None,
        next_look_in_ms: int | None = None,
        release: tuple[str, str] | None = None,
    ) -> TransitionResult:
        """Record the transition; ``next_look_in_ms``: schedule its deadline, ``release``:
        release a lease (``Leases.held_key``), in the same round trip (when applied)."""
        at = now_ms()
        result = await io(
            self.ctx.store.transition(
                record.id,
                target,
                reason=reason,
                fields=fields,
                detail=detail,
                expected_version=expected_version,
                at_ms=at,
                next_look_at_ms=None if next_look_in_ms is None else at + next_look_in_ms,
                release=release,
            )
        )
        if result.applied:
            self._observe(record, target, source, at)
            if reason is not None:
                self.ctx.metrics.failures.labels(reason.value).inc()
            if is_terminal(target):
                await io(self.ctx.rooms.release(record.room, record.id))
            await self.admitter.after_move(record, target, result, at, reason, source)
            if target is DispatchState.FAILED:
                # Every transition is in the dispatch's event stream; the log carries failures.
                log.warning(
                    "dispatch failed",
                    dispatch_id=record.id,
                    previous=result.previous,
                    reason=reason.value if reason else None,
                    source=source,
                )
            if target is DispatchState.SPEAKING:
                self._own_entry(record.id)[2] = 1.0
        return result

    def _observe(self, record: DispatchRecord, target: DispatchState, source: str, at: int) -> None:
        metrics = self.ctx.metrics
        metrics.transitions.labels(target.value, source).inc()
        path = record.path.value if record.path else "unknown"
        stage = STAGE_FROM.get(target)
        if stage is not None and stage[1].value in record.timestamps:
            seconds = (at - record.timestamps[stage[1].value]) / 1000
            metrics.stage_latency.labels(stage[0], path).observe(max(0.0, seconds))
        if target is DispatchState.SPEAKING and "requested" in record.timestamps:
            seconds = (at - record.timestamps["requested"]) / 1000
            metrics.stage_latency.labels("requested_to_speaking", path).observe(seconds)

    async def fail(
        self,
        record: DispatchRecord,
        reason: FailureReason,
        source: str,
        detail: dict[str, str] | None = None,
        expected_version: int | None = None,
    ) -> TransitionResult:
        info = reason_info(reason)
        text = "; ".join(f"{k}={v}" for k, v in (detail or {}).items())
        return await self.move(
            record,
            DispatchState.FAILED,
            source,
            reason=reason,
            fields={"error_detail": text or info.message},
            detail=detail,
            expected_version=expected_version,
        )

    # -- LiveKit calls ----------------------------------------------------------------------
    async def call(self, dispatch_id: str, make: Callable[[], Awaitable[T]]) -> T:
        """A LiveKit call under our lease, retried with backoff while LiveKit is unreachable."""
        settings = self.ctx.settings
        for retry in range(LIVEKIT_CALL_TRIES):
            if not await io(self.ctx.leases.renew(dispatch_id, self.ctx.lease_ms)):
                raise LeaseLost(dispatch_id)
            try:
                return await make()
            except LiveKitError as error:
                if not error.retryable or retry == LIVEKIT_CALL_TRIES - 1:
                    raise
                log.warning(
                    "livekit call failed, retrying", dispatch_id=dispatch_id, error=str(error)
                )
                await asyncio.sleep(backoff_seconds(settings.retry_backoff_seconds, retry))
        raise AssertionError("unreachable")

    # -- attempts ---------------------------------------------------------------------------
    def metadata_json(self, record: DispatchRecord, attempt: int) -> str:
        # The worker's job continues our span (a child of the API's), or the API's when
        # tracing is not configured here.
        trace = inject_context() or record.trace
        meta = DispatchMetadata(
            dispatch_id=record.id, metadata=record.metadata, trace=trace, attempt=attempt
        )
        return msgspec.json.encode(meta).decode()

    async def attempt(self, record: DispatchRecord, attempt: int, look_first: bool) -> None:
        """Create the LiveKit dispatch of ``attempt`` (we hold the lease), then hand the
        dispatch to the deadlines. ``look_first``: a resumed attempt may have been created."""
        gw = self.ctx.gateway
        meta = self.metadata_json(record, attempt)
        path_label = "unknown"
        started = time.perf_counter()
        try:
            existing = None
            if look_first:
                try:
                    listed = await self.call(record.id, lambda: gw.list_dispatches(record.room))
                    existing = find_attempt(listed, record.id, attempt)
                except LiveKitError as error:
                    if error.kind is not ErrorKind.ROOM_GONE:  # no room yet: nothing created
                        raise
            if existing is not None:  # created before a crash: adopt it
                path_label = "adopted"
                livekit_id, path = existing.dispatch_id, record.path or DispatchPath.CREATE_DISPATCH
            elif attempt == 1 and record.kind is DispatchKind.SESSION:
                livekit_id, path = await self._via_room_config(record, meta, attempt)
            else:
                path_label = DispatchPath.CREATE_DISPATCH.value
                livekit_id = await self.create_dispatch_once(record, meta, attempt)
                path = DispatchPath.CREATE_DISPATCH
        except LiveKitError as error:
            self.ctx.metrics.dispatches_created.labels(error.kind.value, path_label).inc()
            detail = {"method": error.method, "status": str(error.status), "code": error.code}
            detail["error"] = error.message[:300]
            await self.fail(record, REASON_BY_KIND[error.kind], "livekit", detail)
            await self.ctx.leases.release(record.id)
            return
        outcome = "adopted" if path_label == "adopted" else "ok"
        self.ctx.metrics.dispatches_created.labels(outcome, path.value).inc()
        self.ctx.metrics.stage_latency.labels("livekit_create", path.value).observe(
            time.perf_counter() - started
        )
        await self.settle_created(record, livekit_id, path, attempt)

    async def _via_room_config(
        self, record: DispatchRecord, meta: str, attempt: int
    ) -> tuple[str, DispatchPath]:
        """CreateRoom with the agent in its configuration (fast path for a new room); the
        configuration is ignored for an existing room, so ListDispatch tells which took."""
        gw = self.ctx.gateway
        await self.call(
            record.id, lambda: gw.create_room_with_agent(record.room, record.agent_name, meta)
        )
        listed = await self.call(record.id, lambda: gw.list_dispatches(record.room))
        found = find_attempt(listed, record.id, attempt)
        if found is not None:
            return found.dispatch_id, DispatchPath.ROOM_CONFIG
        created = await self.create_dispatch_once(record, meta, attempt)
        return created, DispatchPath.CREATE_DISPATCH

    async def create_dispatch_once(self, record: DispatchRecord, meta: str, attempt: int) -> str:
        """CreateDispatch, retried while LiveKit is unreachable; before each retry ListDispatch
        checks whether the failed call was created after all (its answer lost): a blind
        retry would put a second agent in the room."""
        gw, settings = self.ctx.gateway, self.ctx.settings
        for retry in range(LIVEKIT_CALL_TRIES):
            if not await io(self.ctx.leases.renew(record.id, self.ctx.lease_ms)):
                raise LeaseLost(record.id)
            try:
                if retry > 0:
                    try:
                        found = find_attempt(
                            await gw.list_dispatches(record.room), record.id, attempt
                        )
                    except LiveKitError as error:
                        if error.kind is not ErrorKind.ROOM_GONE:
                            raise
                        found = None
                    if found is not None:
                        return str(found.dispatch_id)
                return await gw.create_dispatch(record.room, record.agent_name, meta)
            except LiveKitError as error:
                if not error.retryable or retry == LIVEKIT_CALL_TRIES - 1:
                    raise
                log.warning(
                    "CreateDispatch failed, retrying", dispatch_id=record.id, error=str(error)
                )
                await asyncio.sleep(backoff_seconds(settings.retry_backoff_seconds, retry))
        raise AssertionError("unreachable")

    async def settle_created(
        self, record: DispatchRecord, livekit_id: str, path: DispatchPath, attempt: int
    ) -> None:
        fields = {"livekit_dispatch_id": livekit_id, "path": path.value, "attempts": attempt}
        record.path = path
        timeout = self.ctx.stage_timeout_ms(DispatchState.DISPATCHED) or self.ctx.poll_ms
        first_look_ms = min(self.ctx.poll_ms, timeout)
        lease = self.ctx.leases.held_key(record.id)
        result = await self.move(
            record,
            DispatchState.DISPATCHED,
            "livekit",
            fields=fields,
            next_look_in_ms=first_look_ms,
            release=lease,
        )
        if result.applied:
            self.ctx.leases.forget(record.id)  # the transition released it
            return
        if result.previous is None or is_terminal(result.previous):
            # Cancelled (or failed) while we were creating it: undo what we created.
            await self.remove_from_livekit(record, livekit_id)
            await self.ctx.leases.release(record.id)
            return
        # A faster signal already moved it on; keep the LiveKit ids anyway.
        await io(self.ctx.store.update_fields(record.id, fields))
        if result.previous is not DispatchState.SPEAKING:  # else its slow check is scheduled
            await io(self.ctx.deadlines.schedule(record.id, now_ms() + first_look_ms))
        await io(self.ctx.leases.release(record.id))

    async def remove_from_livekit(self, record: DispatchRecord, livekit_id: str = "") -> None:
        """Delete the dispatch(es) of this record and remove its agent; best effort."""
        gw = self.ctx.gateway
        try:
            ids = {livekit_id} if livekit_id else set()
            if not ids:
                listed = await gw.list_dispatches(record.room)
                ids = {
                    row.dispatch_id
                    for row in listed
                    if _meta_dispatch_id(row.metadata) == record.id
                }
            for dispatch_id in ids:
                await gw.delete_dispatch(dispatch_id, record.room)
            for agent in await gw.agents_in_room(record.room):
                if is_our_agent(agent.agent_name, record):
                    await gw.remove_participant(record.room, agent.identity)
        except LiveKitError as error:
            if error.kind not in (ErrorKind.ROOM_GONE, ErrorKind.NOT_FOUND):
                log.warning("cleanup in LiveKit failed", dispatch_id=record.id, error=str(error))


def is_our_agent(agent_name: str, record: DispatchRecord) -> bool:
    """An agent participant of this dispatch's agent_name (foreign agents are left alone)."""
    return agent_name in ("", record.agent_name)


def _meta_dispatch_id(metadata: str) -> str:
    try:
        return msgspec.json.decode(metadata, type=DispatchMetadata).dispatch_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""
