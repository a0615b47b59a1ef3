"""A dispatch record as the API shows it, and cancellation."""

from __future__ import annotations

import re

from agentline.lifecycle import DispatchState, is_terminal, reason_info
from agentline.schema import DispatchRecord
from token_api.problems import Problem
from token_api.schemas import DispatchStatus, FailureInfo
from token_api.sessions import rfc3339_ms
from token_api.state import AppState

# new_dispatch_id(): "dsp_" + 26 base32 characters
_DISPATCH_ID = re.compile(r"^dsp_[0-9a-z]{26}$")


def not_found(dispatch_id: str) -> Problem:
    return Problem(404, "dispatch-not-found", f"No dispatch '{dispatch_id}' (or it has expired).")


def checked_id(dispatch_id: str) -> str:
    """Malformed ids cannot exist: answer 404 without asking Redis."""
    if not _DISPATCH_ID.match(dispatch_id):
        raise not_found(dispatch_id[:64])
    return dispatch_id


def status_of(record: DispatchRecord) -> DispatchStatus:
    failure = None
    if record.reason is not None:
        info = reason_info(record.reason)
        failure = FailureInfo(record.reason, info.message, info.hint, record.error_detail)
    return DispatchStatus(
        id=record.id,
        state=record.state,
        room=record.room,
        agent_name=record.agent_name,
        kind=record.kind,
        terminal=record.is_terminal,
        created_at=rfc3339_ms(record.created_at_ms),
        updated_at=rfc3339_ms(record.updated_at_ms or record.created_at_ms),
        timestamps={state: rfc3339_ms(at) for state, at in record.timestamps.items()},
        durations_ms=record.durations_ms(),
        attempts=record.attempts,
        agent_identity=record.agent_identity,
        worker_id=record.worker_id,
        livekit_dispatch_id=record.livekit_dispatch_id,
        queue_position=record.queue_position,
        estimated_wait_ms=record.estimated_wait_ms,
        failure=failure,
        events_url=f"/v1/dispatches/{record.id}/events",
    )


async def get_status(state: AppState, dispatch_id: str) -> DispatchStatus:
    record = await state.store.get(checked_id(dispatch_id))
    if record is None:
        raise not_found(dispatch_id)
    return status_of(record)


async def cancel(state: AppState, dispatch_id: str) -> DispatchStatus:
    """Mark the dispatch cancelled, then ask the dispatchers to remove the LiveKit dispatch
    and the agent (they own every LiveKit call)."""
    result = await state.store.transition(checked_id(dispatch_id), DispatchState.CANCELLED)
    if result.previous is None:
        raise not_found(dispatch_id)
    if not result.applied:
        raise Problem(
            409,
            "dispatch-ended",
            f"The dispatch is already {result.previous.value}"
            + (" (a final state)." if is_terminal(result.previous) else "."),
        )
    await state.redis.xadd(
        state.keys.control,
        {"action": "cancel", "dispatch_id": dispatch_id},
        maxlen=100_000,
        approximate=True,
    )
    return await get_status(state, dispatch_id)
