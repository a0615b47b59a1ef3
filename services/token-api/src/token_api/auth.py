"""The authentication guard: a valid API key (Bearer or X-API-Key), then the caller's share
of the rate limit."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from token_api.problems import Problem
from token_api.state import app_state


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    headers = connection.headers
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return headers.get("x-api-key", "").strip()


_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="agentline"'}


async def require_api_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: a valid API key, then the caller's share of the rate limit."""
    state = app_state(connection.app)
    key = presented_key(connection)
    if not key:
        raise Problem(
            401,
            "unauthorized",
            "Send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            headers=_UNAUTHORIZED_HEADERS,
        )
    caller = state.api_keys.caller_of(key)
    if caller is None:
        raise Problem(
            401, "unauthorized", "The API key is not valid.", headers=_UNAUTHORIZED_HEADERS
        )
    connection.scope["state"]["caller"] = caller
    await state.rate_limiter.check(caller)


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return str(connection.scope["state"].get("caller", ""))
