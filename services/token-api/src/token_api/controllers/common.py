"""Pieces the controllers share: documented problem responses, dependencies, idempotency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter
from redis.asyncio import Redis

from agentline.settings import TokenApiSettings
from token_api.auth import caller_of
from token_api.idempotency import body_digest, validate_key
from token_api.problems import PROBLEM_JSON, ProblemDetails
from token_api.responses import JSONAnswer
from token_api.state import STATE_KEY, AppState

T = TypeVar("T", bound=msgspec.Struct)

_DESCRIPTIONS = {
    400: "Malformed JSON or a bad header",
    401: "No API key, or not a valid one",
    404: "No such dispatch",
    409: "Conflict (Idempotency-Key reused with another body, or the dispatch already ended)",
    413: "Request body over the size limit",
    415: "Unsupported media type",
    422: "Invalid fields (details in errors[])",
    429: "Rate limit of the API key exceeded (see Retry-After)",
    503: "Redis unreachable (see Retry-After)",
}


def problem_responses(*codes: int) -> dict[int, ResponseSpec]:
    return {
        code: ResponseSpec(
            data_container=ProblemDetails,
            description=_DESCRIPTIONS.get(code, "Error"),
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for code in codes
    }


AUTHED = (401, 429, 503)

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        max_length=255,
        description="Replay protection: the same key and body return the first answer",
    ),
]


def provide_app_state(state: State) -> AppState:
    app_state: AppState = state[STATE_KEY]
    return app_state


def provide_settings(state: State) -> TokenApiSettings:
    return provide_app_state(state).settings


def provide_redis(state: State) -> Redis:
    return provide_app_state(state).redis


async def answer_once(
    request: Request[Any, Any, Any],
    app: AppState,
    scope: str,
    idempotency_key: str | None,
    result_type: type[T],
    status: int,
    produce: Callable[[str | None], Awaitable[T]],
) -> Response[T]:
    """Run ``produce`` once per Idempotency-Key (and body); replay the first answer after."""
    if idempotency_key is None:
        return JSONAnswer(await produce(None), status_code=status)
    scoped = app.idempotency.scoped(caller_of(request), validate_key(idempotency_key))
    digest = body_digest(await request.body())
    stored = await app.idempotency.reserve(scope, scoped, digest)
    if stored is not None:
        replayed = msgspec.json.decode(stored.body, type=result_type)
        return JSONAnswer(
            replayed, status_code=stored.status, headers={"Idempotent-Replayed": "true"}
        )
    # The dispatch store keeps its own record of the key: scope it too, so that a session and
    # a re-invite sent with the same key stay apart.
    result = await produce(f"{scope}:{scoped}")
    await app.idempotency.remember(scope, scoped, digest, status, msgspec.json.encode(result))
    return JSONAnswer(result, status_code=status)
