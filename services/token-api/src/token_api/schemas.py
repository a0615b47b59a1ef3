"""Request and response bodies (msgspec), with the constraints LiveKit puts on names.

LiveKit caps room names, identities and participant names at 256 bytes. Room names and
identities are further kept to a URL-, log- and Redis-key-safe ASCII set so that they reach
LiveKit, the dispatcher and the frontend unchanged; an empty room name is refused (LiveKit
would create a nameless room).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from agentline.lifecycle import DispatchState, FailureReason
from agentline.schema import DispatchKind

LIVEKIT_NAME_MAX_BYTES = 256
SAFE_NAME_PATTERN = r"^[A-Za-z0-9_.:@+=~-]+$"
SAFE_NAME_CHARS = "letters, digits and _ . : @ + = ~ -"
AGENT_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"

RoomName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=LIVEKIT_NAME_MAX_BYTES,
        pattern=SAFE_NAME_PATTERN,
        description=f"LiveKit room name: 1-256 of {SAFE_NAME_CHARS}",
        examples=["travel-room-4f2a9c"],
    ),
]
Identity = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=LIVEKIT_NAME_MAX_BYTES,
        pattern=SAFE_NAME_PATTERN,
        description=f"Participant identity: 1-256 of {SAFE_NAME_CHARS}",
        examples=["user-42"],
    ),
]
DisplayName = Annotated[
    str,
    Meta(
        max_length=LIVEKIT_NAME_MAX_BYTES,
        description="Participant display name (at most 256 bytes of UTF-8, no control characters)",
        examples=["Ada"],
    ),
]
AgentName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=AGENT_NAME_PATTERN,
        description="agent_name the deployment allows (see GET /v1/agents)",
        examples=["travel-assistant"],
    ),
]
Metadata = Annotated[
    str | dict[str, Any],
    Meta(description="Free-form metadata (a string, or an object sent as JSON); size-capped"),
]
TtlSeconds = Annotated[
    int, Meta(ge=60, le=7 * 86400, description="Token lifetime in seconds (capped by the server)")
]


class SessionCreate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A new voice session: a participant token and an agent dispatched to the room."""

    room: RoomName | None = None
    identity: Identity | None = None
    name: DisplayName | None = None
    agent_name: AgentName | None = None
    metadata: Metadata | None = None
    ttl_seconds: TtlSeconds | None = None


class TokenCreate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A participant token only: no agent is dispatched."""

    room: RoomName | None = None
    identity: Identity | None = None
    name: DisplayName | None = None
    metadata: Metadata | None = None
    ttl_seconds: TtlSeconds | None = None


class DispatchCreate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Re-invite an agent into a room that exists."""

    room: RoomName
    agent_name: AgentName | None = None
    metadata: Metadata | None = None


class SessionToken(msgspec.Struct):
    room: str
    identity: str
    token: str
    livekit_url: str
    expires_at: str  # RFC 3339, UTC


class DispatchLink(msgspec.Struct):
    id: str
    state: DispatchState
    status_url: str
    events_url: str


class SessionCreated(msgspec.Struct):
    session: SessionToken
    dispatch: DispatchLink


class FailureInfo(msgspec.Struct):
    reason: FailureReason
    message: str
    hint: str
    detail: str = ""


class DispatchStatus(msgspec.Struct, omit_defaults=True):
    id: str
    state: DispatchState
    room: str
    agent_name: str
    kind: DispatchKind
    terminal: bool
    created_at: str
    updated_at: str
    timestamps: dict[str, str]  # state → RFC 3339 time it was entered
    durations_ms: dict[str, int]  # "a→b" → milliseconds between consecutive stages
    attempts: int
    agent_identity: str = ""
    worker_id: str = ""
    livekit_dispatch_id: str = ""
    queue_position: int = 0
    estimated_wait_ms: int = 0
    failure: FailureInfo | None = None
    events_url: str = ""


class AgentInfo(msgspec.Struct):
    agent_name: str
    allowed: bool  # callers may request it
    workers: int
    capacity: int  # slots: capacity of the live workers that are not draining
    active_jobs: int
    load: float
    draining_workers: int
    used: int = 0  # slots reserved by dispatches or held by running jobs (admission)
    waiting: int = 0  # dispatches waiting for a slot (admission queue)


class AgentList(msgspec.Struct):
    default_agent_name: str
    agents: list[AgentInfo]


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    ready: bool
    checks: dict[str, bool]


class NotReady(msgspec.Struct):
    """/readyz when a dependency is missing: a problem document with the failed checks."""

    type: str
    title: str
    status: int
    detail: str
    ready: bool
    checks: dict[str, bool]
