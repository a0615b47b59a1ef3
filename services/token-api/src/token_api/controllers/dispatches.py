"""Dispatches: re-invite, status, live events (SSE) and cancel."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody
from litestar.response import ServerSentEvent

from token_api import sessions, status
from token_api.auth import ApiKeyMiddleware
from token_api.controllers.common import (
    AUTHED,
    IdempotencyKey,
    answer_once,
    problem_responses,
)
from token_api.schemas import DispatchCreate, DispatchLink, DispatchStatus
from token_api.sse import checked_last_event_id, dispatch_events
from token_api.state import AppState


class DispatchController(Controller):
    path = "/v1/dispatches"
    tags = ["dispatches"]
    middleware = [ApiKeyMiddleware]
    security = [{"BearerAuth": []}, {"ApiKeyHeader": []}]

    @post(
        "/",
        status_code=202,
        summary="Re-invite an agent into an existing room",
        description=(
            "Publishes a re-invite request; the dispatcher checks that the room exists and "
            "fails the dispatch with reason room_gone when it does not."
        ),
        responses=problem_responses(400, 409, 413, 415, 422, *AUTHED),
    )
    async def create_dispatch(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[DispatchCreate],
        app_state: NamedDependency[AppState],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[DispatchLink]:
        async def produce(key: str | None) -> DispatchLink:
            return await sessions.create_reinvite(app_state, data, key, request.headers)

        return await answer_once(
            request, app_state, "reinvite", idempotency_key, DispatchLink, 202, produce
        )

    @get(
        "/{dispatch_id:str}",
        summary="Dispatch status",
        description="State, failure reason with message and hint, per-stage times, attempts.",
        responses=problem_responses(404, *AUTHED),
    )
    async def get_dispatch(
        self, dispatch_id: FromPath[str], app_state: NamedDependency[AppState]
    ) -> DispatchStatus:
        return await status.get_status(app_state, dispatch_id)

    @delete(
        "/{dispatch_id:str}",
        status_code=202,
        summary="Cancel a dispatch",
        description=(
            "Marks the dispatch cancelled; the dispatcher removes the LiveKit dispatch and "
            "the agent. 409 when the dispatch already reached a final state."
        ),
        responses=problem_responses(404, 409, *AUTHED),
    )
    async def cancel_dispatch(
        self, dispatch_id: FromPath[str], app_state: NamedDependency[AppState]
    ) -> DispatchStatus:
        return await status.cancel(app_state, dispatch_id)

    @get(
        "/{dispatch_id:str}/events",
        summary="Live dispatch events (Server-Sent Events)",
        description=(
            "One `transition` event per state change, `id:` = the event id; reconnect with "
            "Last-Event-ID to resume. Comment lines are heartbeats. The stream closes after "
            "a final state (ended, failed, cancelled)."
        ),
        responses=problem_responses(400, 404, *AUTHED),
        media_type="text/event-stream",
    )
    async def dispatch_events(
        self,
        dispatch_id: FromPath[str],
        app_state: NamedDependency[AppState],
        last_event_id: Annotated[
            str | None,
            HeaderParameter(
                name="Last-Event-ID", required=False, description="Resume after this event id"
            ),
        ] = None,
    ) -> ServerSentEvent:
        after = checked_last_event_id(last_event_id)
        if not await app_state.redis.exists(
            app_state.keys.dispatch(status.checked_id(dispatch_id))
        ):
            raise status.not_found(dispatch_id)
        return ServerSentEvent(
            dispatch_events(
                app_state.stream_store,
                dispatch_id,
                after,
                app_state.settings.sse_heartbeat_seconds,
            ),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
