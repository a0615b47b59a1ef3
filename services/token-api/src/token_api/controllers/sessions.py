"""POST /v1/sessions and POST /v1/tokens."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from token_api import sessions
from token_api.auth import ApiKeyMiddleware
from token_api.controllers.common import (
    AUTHED,
    IdempotencyKey,
    answer_once,
    problem_responses,
)
from token_api.requests import LeanBodyRequest
from token_api.schemas import SessionCreate, SessionCreated, SessionToken, TokenCreate
from token_api.state import AppState, app_state


class SessionController(Controller):
    path = "/v1"
    tags = ["sessions"]
    middleware = [ApiKeyMiddleware]
    request_class = LeanBodyRequest
    security = [{"BearerAuth": []}, {"ApiKeyHeader": []}]

    @post(
        "/sessions",
        status_code=201,
        summary="Start a voice session",
        description=(
            "Records the dispatch of an agent into the room and publishes it to the dispatch "
            "stream (atomically), then mints the participant token. LiveKit is not called: "
            "follow the dispatch with status_url or events_url."
        ),
        responses=problem_responses(400, 409, 413, 415, 422, *AUTHED),
    )
    async def create_session(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[SessionCreate],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[SessionCreated]:
        # The hottest route reads the state itself: a resolved dependency costs ~3 % of it.
        state = app_state(request.app)

        async def produce(key: str | None) -> SessionCreated:
            return await sessions.create_session(state, data, key, request.headers)

        return await answer_once(
            request, state, "session", idempotency_key, SessionCreated, 201, produce
        )

    @post(
        "/tokens",
        status_code=201,
        summary="Mint a participant token only",
        description="A token for the room, without dispatching an agent.",
        responses=problem_responses(400, 409, 413, 415, 422, *AUTHED),
    )
    async def create_token(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[TokenCreate],
        app_state: NamedDependency[AppState],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[SessionToken]:
        async def produce(_: str | None) -> SessionToken:
            return sessions.create_token(app_state, data)

        return await answer_once(
            request, app_state, "token", idempotency_key, SessionToken, 201, produce
        )
