"""Authentication of every /v1 route: a valid API key (Bearer or X-API-Key), then the
caller's share of the rate limit.

It is an ASGI middleware on the controllers rather than a Litestar guard: it runs at the same
point (before the body is read and the handler's parameters are resolved), but a guard is
called with a copy of the route handler made for every request, which cost about a tenth of
the session path's CPU.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.types import ASGIApp, Receive, Scope, Send

from token_api.problems import Problem
from token_api.state import app_state

_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="agentline"'}


def presented_key(headers: list[tuple[bytes, bytes]]) -> str:
    """The API key from ``Authorization: Bearer`` or else ``X-API-Key`` (raw ASGI headers,
    names lower-cased as ASGI servers give them)."""
    api_key_header = b""
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == b"bearer ":
                return value[7:].decode("latin-1").strip()
        elif name == b"x-api-key":
            api_key_header = value
    return api_key_header.decode("latin-1").strip()


class ApiKeyMiddleware:
    """Rejects a request without a valid key (401) or over its rate limit (429), and leaves
    the caller's id in ``scope["state"]["caller"]``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = app_state(scope["app"])
            key = presented_key(scope["headers"])  # type: ignore[arg-type]
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
            scope.setdefault("state", {})["caller"] = caller
            await state.rate_limiter.check(caller)
        await self.app(scope, receive, send)


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return str(connection.scope["state"].get("caller", ""))
