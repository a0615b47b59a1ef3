"""LiveKit error classification, by what a real server answers (golden traces)."""

from __future__ import annotations

import aiohttp
import pytest
from livekit import api

from dispatcher.livekit_gateway import ErrorKind, classify


@pytest.mark.parametrize(
    ("method", "status", "code", "kind"),
    [
        # wrong secret: plain-text 401 before Twirp, the SDK reports code "unknown"
        ("CreateRoom", 401, "unknown", ErrorKind.AUTH),
        ("ListDispatch", 401, "unauthenticated", ErrorKind.AUTH),
        ("CreateDispatch", 403, "permission_denied", ErrorKind.AUTH),
        ("CreateDispatch", 400, "invalid_argument", ErrorKind.REJECTED),
        ("CreateRoom", 400, "malformed", ErrorKind.REJECTED),
        ("DeleteDispatch", 404, "not_found", ErrorKind.NOT_FOUND),
        # ListDispatch on a room that has closed: 503 unavailable means the room is gone
        ("ListDispatch", 503, "unavailable", ErrorKind.ROOM_GONE),
        # ...while a 503 anywhere else is LiveKit being down
        ("CreateDispatch", 503, "unavailable", ErrorKind.UNREACHABLE),
        ("ListDispatch", 502, "unknown", ErrorKind.UNREACHABLE),
        ("CreateRoom", 500, "internal", ErrorKind.UNREACHABLE),
        ("CreateRoom", 429, "resource_exhausted", ErrorKind.UNREACHABLE),
    ],
)
def test_server_errors(method: str, status: int, code: str, kind: ErrorKind) -> None:
    error = classify(method, api.ServerError(code, "msg", status=status))
    assert error.kind is kind
    assert error.status == status
    assert error.retryable is (kind is ErrorKind.UNREACHABLE)


def test_transport_errors_and_timeouts_are_unreachable() -> None:
    refused = aiohttp.ClientConnectorError(None, OSError(111, "refused"))  # type: ignore[arg-type]
    assert classify("CreateRoom", refused).kind is ErrorKind.UNREACHABLE
    assert classify("CreateRoom", TimeoutError()).kind is ErrorKind.UNREACHABLE
    assert classify("CreateRoom", aiohttp.ServerDisconnectedError()).kind is ErrorKind.UNREACHABLE


def test_programming_errors_are_not_swallowed() -> None:
    with pytest.raises(KeyError):
        classify("CreateRoom", KeyError("x"))
