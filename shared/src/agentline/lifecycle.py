"""The dispatch lifecycle: states, allowed transitions and the closed set of failure reasons."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DispatchState(StrEnum):
    REQUESTED = "requested"  # in the stream
    WAITING = "waiting"  # every worker for the agent_name is full; queued for a slot
    DISPATCHING = "dispatching"  # a dispatcher owns it and is calling LiveKit
    DISPATCHED = "dispatched"  # LiveKit returned a dispatch id
    ASSIGNED = "assigned"  # a worker accepted the job
    JOINED = "joined"  # the agent participant is in the room
    SPEAKING = "speaking"  # the agent published an audio track
    ENDED = "ended"  # job or room ended after the agent spoke
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES: frozenset[DispatchState] = frozenset(
    {DispatchState.ENDED, DispatchState.FAILED, DispatchState.CANCELLED}
)

# The order of progress; a later signal may skip stages (a webhook for the join can arrive
# before the worker's "assigned" event), so forward moves may jump ahead.
PROGRESS: tuple[DispatchState, ...] = (
    DispatchState.REQUESTED,
    DispatchState.WAITING,
    DispatchState.DISPATCHING,
    DispatchState.DISPATCHED,
    DispatchState.ASSIGNED,
    DispatchState.JOINED,
    DispatchState.SPEAKING,
)
_RANK = {state: index for index, state in enumerate(PROGRESS)}


def _allowed() -> dict[DispatchState, frozenset[DispatchState]]:
    table: dict[DispatchState, set[DispatchState]] = {}
    for state in PROGRESS:
        forward = {later for later in PROGRESS if _RANK[later] > _RANK[state]}
        table[state] = forward | {DispatchState.FAILED, DispatchState.CANCELLED}
    # A retry goes back to dispatching from a stage that timed out.
    for stage in (DispatchState.DISPATCHED, DispatchState.ASSIGNED, DispatchState.JOINED):
        table[stage].add(DispatchState.DISPATCHING)
    # A dispatch whose slot was taken back waits again.
    table[DispatchState.DISPATCHING].add(DispatchState.WAITING)
    table[DispatchState.SPEAKING] = {DispatchState.ENDED, DispatchState.FAILED}
    table[DispatchState.SPEAKING].add(DispatchState.CANCELLED)
    # Nothing happens in LiveKit before a dispatcher owns the request.
    table[DispatchState.REQUESTED] = {
        DispatchState.WAITING,
        DispatchState.DISPATCHING,
        DispatchState.FAILED,
        DispatchState.CANCELLED,
    }
    # The room may end once the agent is in it, before it spoke.
    table[DispatchState.JOINED].add(DispatchState.ENDED)
    # Waiting can only be left by dispatching (a slot freed) or a terminal state.
    table[DispatchState.WAITING] = {
        DispatchState.DISPATCHING,
        DispatchState.FAILED,
        DispatchState.CANCELLED,
    }
    for terminal in TERMINAL_STATES:
        table[terminal] = set()
    return {state: frozenset(targets) for state, targets in table.items()}


ALLOWED_TRANSITIONS: dict[DispatchState, frozenset[DispatchState]] = _allowed()


def can_transition(current: DispatchState, target: DispatchState) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def is_terminal(state: DispatchState) -> bool:
    return state in TERMINAL_STATES


class FailureReason(StrEnum):
    NO_WORKER_FOR_AGENT = "no_worker_for_agent"
    LIVEKIT_UNREACHABLE = "livekit_unreachable"
    LIVEKIT_AUTH = "livekit_auth"
    LIVEKIT_REJECTED = "livekit_rejected"
    NOT_ASSIGNED = "not_assigned"
    NO_CAPACITY = "no_capacity"
    JOIN_TIMEOUT = "join_timeout"
    NO_AUDIO = "no_audio"
    ROOM_GONE = "room_gone"
    RETRIES_EXHAUSTED = "retries_exhausted"


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    message: str
    hint: str


REASONS: dict[FailureReason, ReasonInfo] = {
    FailureReason.NO_WORKER_FOR_AGENT: ReasonInfo(
        "No live agent worker is registered for this agent_name.",
        "Start a worker with AGENT_WORKER_AGENT_NAME set to this name, or dispatch one of the "
        "names that are served. A worker registered with an empty agent_name never receives "
        "explicit dispatches.",
    ),
    FailureReason.LIVEKIT_UNREACHABLE: ReasonInfo(
        "LiveKit could not be reached or kept failing with server errors.",
        "Check LIVEKIT_URL, the network path from the dispatcher to LiveKit and the LiveKit "
        "server's health.",
    ),
    FailureReason.LIVEKIT_AUTH: ReasonInfo(
        "LiveKit refused the API credentials.",
        "LIVEKIT_API_KEY and LIVEKIT_API_SECRET must be a key/secret pair configured on the "
        "LiveKit server (a wrong secret is answered with a plain HTTP 401).",
    ),
    FailureReason.LIVEKIT_REJECTED: ReasonInfo(
        "LiveKit rejected the dispatch request.",
        "Read the error detail: the room name, agent_name or metadata is not acceptable.",
    ),
    FailureReason.NOT_ASSIGNED: ReasonInfo(
        "No worker accepted the job in time.",
        "Workers may be full (LiveKit drops jobs when no worker is AVAILABLE) or not answering. "
        "Check agent_worker_active_jobs against agent_worker_capacity and the worker logs.",
    ),
    FailureReason.NO_CAPACITY: ReasonInfo(
        "Every worker for this agent_name stayed full for longer than allowed.",
        "Scale the agent-worker deployment; watch dispatcher_admission_waiting and "
        "(active + waiting) / capacity.",
    ),
    FailureReason.JOIN_TIMEOUT: ReasonInfo(
        "A worker accepted the job but the agent never joined the room.",
        "Check the worker's job logs: ctx.connect() errors, LiveKit URL reachable from the "
        "worker, network (UDP/TURN) between worker and LiveKit.",
    ),
    FailureReason.NO_AUDIO: ReasonInfo(
        "The agent joined but never published an audio track.",
        "Check the model connection (OPENAI_API_KEY, Realtime API reachability) and the "
        "agent session start in the worker logs.",
    ),
    FailureReason.ROOM_GONE: ReasonInfo(
        "The room closed before the agent joined.",
        "The caller left or the room hit its empty timeout; start a new session.",
    ),
    FailureReason.RETRIES_EXHAUSTED: ReasonInfo(
        "Every dispatch attempt timed out.",
        "See the attempts' stages in the events; usually workers are overloaded or crash "
        "while joining.",
    ),
}


def reason_info(reason: FailureReason) -> ReasonInfo:
    return REASONS[reason]
