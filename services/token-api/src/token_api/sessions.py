"""The request path of sessions, tokens and re-invites: validate, record the dispatch and
publish it (one atomic Redis call), then mint the token. LiveKit is never called here."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import msgspec
from opentelemetry import trace

from agentline.ids import now_ms, random_hex
from agentline.lifecycle import DispatchState
from agentline.schema import DispatchKind, DispatchRecord, DispatchRequest
from agentline.settings import TokenApiSettings
from token_api import metrics
from token_api.dispatch_ids import new_dispatch_id
from token_api.problems import Problem, invalid
from token_api.schemas import (
    LIVEKIT_NAME_MAX_BYTES,
    DispatchCreate,
    DispatchLink,
    SessionCreate,
    SessionCreated,
    SessionToken,
    TokenCreate,
)
from token_api.state import AppState

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@lru_cache(maxsize=4096)
def rfc3339(unix_seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_seconds))


def rfc3339_ms(unix_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix_ms // 1000)) + (
        f".{unix_ms % 1000:03d}Z"
    )


def dispatch_link(dispatch_id: str, state: DispatchState) -> DispatchLink:
    status_url = f"/v1/dispatches/{dispatch_id}"
    return DispatchLink(dispatch_id, state, status_url, status_url + "/events")


def agent_name_of(settings: TokenApiSettings, requested: str | None) -> str:
    name = requested or settings.default_agent_name
    if name not in settings.allowed_agent_names:
        allowed = ", ".join(settings.allowed_agent_names) or "(none configured)"
        raise invalid("agent_name", f"'{name}' is not allowed here; allowed: {allowed}")
    return name


def metadata_text(settings: TokenApiSettings, metadata: str | dict[str, Any] | None) -> str:
    if metadata is None:
        return ""
    text = metadata if isinstance(metadata, str) else msgspec.json.encode(metadata).decode()
    size = len(text.encode())
    if size > settings.max_metadata_bytes:
        raise invalid(
            "metadata", f"{size} bytes; at most {settings.max_metadata_bytes} bytes are accepted"
        )
    return text


def display_name(name: str | None) -> str:
    if not name:
        return ""
    if len(name.encode()) > LIVEKIT_NAME_MAX_BYTES:
        raise invalid("name", f"at most {LIVEKIT_NAME_MAX_BYTES} bytes of UTF-8")
    if _CONTROL_CHARS.search(name):
        raise invalid("name", "control characters are not allowed")
    return name


def ttl_of(settings: TokenApiSettings, requested: int | None) -> int:
    ttl = requested or settings.token_ttl_seconds
    if ttl > settings.max_token_ttl_seconds:
        raise invalid("ttl_seconds", f"at most {settings.max_token_ttl_seconds} seconds")
    return ttl


def new_room(settings: TokenApiSettings) -> str:
    return settings.room_prefix + random_hex(6)


def new_identity() -> str:
    return "user-" + random_hex(6)


def _token(
    state: AppState, room: str, identity: str, name: str, metadata: str, ttl: int
) -> SessionToken:
    minted = state.minter.mint(
        room=room, identity=identity, ttl_seconds=ttl, name=name, metadata=metadata
    )
    metrics.TOKENS_MINTED.inc()
    return SessionToken(room, identity, minted.jwt, state.livekit_url, rfc3339(minted.expires_at))


_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def dispatch_trace(headers: Mapping[str, str]) -> dict[str, str]:
    """The W3C trace context the dispatch carries through the stream.

    With the ASGI instrumentation on (spans exported) it is the request's server span.
    Without it nothing is exported, so no span is recorded: the dispatch gets fresh span ids
    of its own, continuing the caller's ``traceparent`` when there is one, so the dispatcher
    and the worker still share one trace id per dispatch. It is marked sampled unless the
    caller said otherwise, so that services that do export record their spans. New ids are
    random bytes from the pooled CSPRNG (``agentline.ids``), written as hex directly.
    """
    current = trace.get_current_span().get_span_context()
    if current.is_valid:
        return _carrier(current.trace_id, current.span_id, int(current.trace_flags))
    flags = "01"  # sampled
    incoming = headers.get("traceparent")
    if incoming:
        parent = _TRACEPARENT.match(incoming.strip().lower())
        if parent is not None and int(parent.group(2), 16):
            trace_id, flags = int(parent.group(1), 16), parent.group(3)
            if trace_id:
                return _carrier(trace_id, random.getrandbits(64) or 1, int(flags, 16))
    # A new trace (the common case: no caller context). All-zero ids are invalid in W3C
    # trace context; 8 or 16 random bytes all zero are not worth a test (2^-64 at most).
    return {"traceparent": f"00-{random_hex(16)}-{random_hex(8)}-{flags}"}


def _carrier(trace_id: int, span_id: int, flags: int) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"}


async def _record(
    state: AppState, request: DispatchRequest, idempotency_key: str | None
) -> DispatchRecord | None:
    """Record and publish; None when new, else the dispatch the idempotency key already made."""
    started = time.perf_counter()
    result = await state.session_store.create(request, idempotency_key)
    metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)
    if result.created:
        metrics.dispatch_requested(request.kind.value)
        return None
    earlier = await state.store.get(result.dispatch_id)
    if earlier is None:
        raise Problem(
            409,
            "idempotency-key-expired",
            "The dispatch this Idempotency-Key created has expired; send a new key.",
        )
    return earlier


async def create_session(
    state: AppState,
    body: SessionCreate,
    idempotency_key: str | None,
    headers: Mapping[str, str],
) -> SessionCreated:
    settings = state.settings
    agent_name = agent_name_of(settings, body.agent_name)
    metadata = metadata_text(settings, body.metadata)
    name = display_name(body.name)
    ttl = ttl_of(settings, body.ttl_seconds)
    room = body.room or new_room(settings)
    identity = body.identity or new_identity()
    request = DispatchRequest(
        dispatch_id=new_dispatch_id(),
        room=room,
        agent_name=agent_name,
        kind=DispatchKind.SESSION,
        metadata=metadata,
        caller_identity=identity,
        requested_at_ms=now_ms(),
        trace=dispatch_trace(headers),
    )
    # The token is minted only after the dispatch is recorded: no token without a dispatch.
    earlier = await _record(state, request, idempotency_key)
    if earlier is not None:
        room, identity = earlier.room, earlier.caller_identity or identity
        link = dispatch_link(earlier.id, earlier.state)
    else:
        link = dispatch_link(request.dispatch_id, DispatchState.REQUESTED)
        metrics.session_created(agent_name)
    return SessionCreated(_token(state, room, identity, name, metadata, ttl), link)


def create_token(state: AppState, body: TokenCreate) -> SessionToken:
    settings = state.settings
    metadata = metadata_text(settings, body.metadata)
    name = display_name(body.name)
    ttl = ttl_of(settings, body.ttl_seconds)
    room = body.room or new_room(settings)
    identity = body.identity or new_identity()
    return _token(state, room, identity, name, metadata, ttl)


async def create_reinvite(
    state: AppState,
    body: DispatchCreate,
    idempotency_key: str | None,
    headers: Mapping[str, str],
) -> DispatchLink:
    """An agent for a room that exists; the dispatcher checks the room and fails the dispatch
    with ``room_gone`` when it does not (this path must not ask LiveKit)."""
    settings = state.settings
    request = DispatchRequest(
        dispatch_id=new_dispatch_id(),
        room=body.room,
        agent_name=agent_name_of(settings, body.agent_name),
        kind=DispatchKind.REINVITE,
        metadata=metadata_text(settings, body.metadata),
        requested_at_ms=now_ms(),
        trace=dispatch_trace(headers),
    )
    earlier = await _record(state, request, idempotency_key)
    if earlier is not None:
        return dispatch_link(earlier.id, earlier.state)
    return dispatch_link(request.dispatch_id, DispatchState.REQUESTED)
