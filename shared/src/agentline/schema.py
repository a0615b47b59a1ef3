"""Wire schemas shared by the services (msgspec): stream entries, records, events, registry."""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Any

import msgspec

from agentline.lifecycle import DispatchState, FailureReason, reason_info


class DispatchKind(StrEnum):
    SESSION = "session"  # a new session: the room is usually new
    REINVITE = "reinvite"  # an agent for a room that exists


class DispatchPath(StrEnum):
    ROOM_CONFIG = "room_config"  # CreateRoom with the agent in the room configuration
    CREATE_DISPATCH = "create_dispatch"  # CreateDispatch on an existing room (or a retry)


class DispatchRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """A dispatch request as token-api writes it to the requests stream."""

    dispatch_id: str
    room: str
    agent_name: str
    kind: DispatchKind = DispatchKind.SESSION
    metadata: str = ""
    caller_identity: str = ""
    requested_at_ms: int = 0
    trace: dict[str, str] = {}


class DispatchMetadata(msgspec.Struct, frozen=True, omit_defaults=True):
    """JSON carried in the LiveKit dispatch's metadata, read by the agent worker."""

    dispatch_id: str
    metadata: str = ""
    trace: dict[str, str] = {}
    attempt: int = 1


# Field names of the record hash that hold plain values (timestamps are t_<state>).
_INT_FIELDS = ("created_at_ms", "updated_at_ms", "attempts", "version", "queue_position")


class DispatchRecord(msgspec.Struct, omit_defaults=True):
    """The dispatch as stored in its Redis hash."""

    id: str
    state: DispatchState
    room: str
    agent_name: str
    kind: DispatchKind = DispatchKind.SESSION
    metadata: str = ""
    caller_identity: str = ""
    created_at_ms: int = 0
    updated_at_ms: int = 0
    version: int = 0
    attempts: int = 0
    timestamps: dict[str, int] = {}
    reason: FailureReason | None = None
    error_detail: str = ""
    livekit_dispatch_id: str = ""
    path: DispatchPath | None = None
    agent_identity: str = ""
    worker_id: str = ""
    job_id: str = ""
    queue_position: int = 0
    estimated_wait_ms: int = 0
    # The worker that took the job reports its events (our agent-worker): its slot is given
    # back when it says the job is over, not when LiveKit says the agent left.
    worker_reports: bool = False
    trace: dict[str, str] = {}

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> DispatchRecord:
        timestamps = {k[2:]: int(v) for k, v in raw.items() if k.startswith("t_")}
        fields: dict[str, Any] = {k: v for k, v in raw.items() if not k.startswith("t_")}
        for name in (*_INT_FIELDS, "estimated_wait_ms"):
            if name in fields:
                fields[name] = int(fields[name])
        if "trace" in fields:
            fields["trace"] = msgspec.json.decode(fields["trace"])
        for optional in ("reason", "path"):
            if fields.get(optional) == "":
                fields.pop(optional)
        fields["timestamps"] = timestamps
        return msgspec.convert(fields, cls, strict=False)

    def to_hash(self) -> dict[str, str]:
        data = msgspec.to_builtins(self)
        timestamps = data.pop("timestamps", {})
        out = {k: (v if isinstance(v, str) else str(v)) for k, v in data.items() if k != "trace"}
        out["trace"] = msgspec.json.encode(self.trace).decode()
        out.update({f"t_{state}": str(at) for state, at in timestamps.items()})
        return out

    @property
    def is_terminal(self) -> bool:
        from agentline.lifecycle import is_terminal

        return is_terminal(self.state)

    def durations_ms(self) -> dict[str, int]:
        """Time spent between consecutive recorded stages, e.g. ``requested→dispatched``."""
        from agentline.lifecycle import PROGRESS

        seen = [(s.value, self.timestamps[s.value]) for s in PROGRESS if s.value in self.timestamps]
        out = {f"{a}→{b}": tb - ta for (a, ta), (b, tb) in itertools.pairwise(seen)}
        if "requested" in self.timestamps and "speaking" in self.timestamps:
            out["requested→speaking"] = self.timestamps["speaking"] - self.timestamps["requested"]
        return out


class DispatchEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One transition of one dispatch, as appended to its event stream."""

    dispatch_id: str
    seq: int
    state: DispatchState
    previous: DispatchState | None = None
    at_ms: int = 0
    reason: FailureReason | None = None
    message: str = ""
    hint: str = ""
    detail: dict[str, str] = {}
    event_id: str = ""  # the stream entry id (set when read)
    # "transition", or "queue": a waiting dispatch's new place (detail: position,
    # estimated_wait_ms); the state stays waiting and seq is that of the waiting transition.
    kind: str = "transition"

    @classmethod
    def from_fields(cls, event_id: str, raw: dict[str, str]) -> DispatchEvent:
        reason = FailureReason(raw["reason"]) if raw.get("reason") else None
        info = reason_info(reason) if reason else None
        detail = msgspec.json.decode(raw["detail"]) if raw.get("detail") else {}
        return cls(
            dispatch_id=raw["dispatch_id"],
            seq=int(raw["seq"]),
            state=DispatchState(raw["state"]),
            previous=DispatchState(raw["previous"]) if raw.get("previous") else None,
            at_ms=int(raw.get("at_ms", 0)),
            reason=reason,
            message=info.message if info else "",
            hint=info.hint if info else "",
            detail=detail,
            event_id=event_id,
            kind=raw.get("kind", "transition"),
        )


class WorkerEventKind(StrEnum):
    REQUEST_RECEIVED = "request_received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    JOINED = "joined"
    AUDIO_PUBLISHED = "audio_published"
    ENDED = "ended"
    FAILED = "failed"


class WorkerEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """What an agent worker reports about a job, on the worker-events stream."""

    kind: WorkerEventKind
    worker_id: str
    agent_name: str
    job_id: str = ""
    dispatch_id: str = ""
    room: str = ""
    agent_identity: str = ""
    participant_sid: str = ""
    reason: str = ""
    error: str = ""
    stage: str = ""
    at_ms: int = 0

    def to_fields(self) -> dict[str, str]:
        return {k: str(v) for k, v in msgspec.to_builtins(self).items()}

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> WorkerEvent:
        fields: dict[str, Any] = dict(raw)
        if "at_ms" in fields:
            fields["at_ms"] = int(fields["at_ms"])
        return msgspec.convert(fields, cls, strict=False)


class WorkerInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A worker's registry entry, refreshed by its heartbeats."""

    worker_id: str
    agent_name: str
    capacity: int
    active_jobs: int = 0
    load: float = 0.0
    draining: bool = False
    livekit_worker_id: str = ""
    version: str = ""
    host: str = ""
    heartbeat_at_ms: int = 0

    @property
    def free_slots(self) -> int:
        return 0 if self.draining else max(0, self.capacity - self.active_jobs)

    def to_fields(self) -> dict[str, str]:
        data = msgspec.to_builtins(self)
        data["draining"] = "1" if self.draining else "0"
        return {k: str(v) for k, v in data.items()}

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> WorkerInfo:
        fields: dict[str, Any] = dict(raw)
        fields["draining"] = raw.get("draining") == "1"
        return msgspec.convert(fields, cls, strict=False)


class AgentNameSummary(msgspec.Struct, frozen=True):
    """Live workers of one agent_name, summed."""

    agent_name: str
    workers: int
    capacity: int
    active_jobs: int
    draining_workers: int

    @property
    def load(self) -> float:
        return self.active_jobs / self.capacity if self.capacity else 1.0
