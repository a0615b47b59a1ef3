"""Twirp errors as LiveKit's server writes them."""

from __future__ import annotations

import json

from aiohttp import web

# The HTTP status Twirp uses for each error code.
TWIRP_STATUS: dict[str, int] = {
    "canceled": 408,
    "unknown": 500,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
}


class TwirpError(Exception):
    """An error answered as a Twirp JSON body ``{"code", "msg"[, "meta"]}``."""

    def __init__(self, code: str, msg: str, meta: dict[str, str] | None = None) -> None:
        if code not in TWIRP_STATUS:
            raise ValueError(f"unknown twirp error code {code!r}")
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.meta = meta or {}

    @property
    def status(self) -> int:
        return TWIRP_STATUS[self.code]

    def to_response(self) -> web.Response:
        body: dict[str, object] = {"code": self.code, "msg": self.msg}
        if self.meta:
            body["meta"] = self.meta
        return web.Response(
            status=self.status,
            body=json.dumps(body).encode(),
            content_type="application/json",
        )


def psrpc_error(code: str, msg: str) -> TwirpError:
    """An error that reached Twirp through LiveKit's internal RPC: its text is prefixed the
    way the real server prefixes it (``twirp error unknown: ...``)."""
    return TwirpError(code, f"twirp error unknown: {msg}")


# The errors the real server answers, with its wording (see ../shared/livekit-golden/twirp/).
def permissions_denied() -> TwirpError:
    return TwirpError("unauthenticated", "permissions denied")


def room_not_found() -> TwirpError:
    return psrpc_error("not_found", "requested room does not exist")


def participant_not_found() -> TwirpError:
    return psrpc_error("not_found", "participant does not exist")


def no_response_from_servers() -> TwirpError:
    # What ListDispatch / DeleteDispatch answer when no node hosts the room (it closed).
    return psrpc_error("unavailable", "no response from servers")


def plain_text(status: int, text: str) -> web.Response:
    """A non-Twirp error: what the auth middleware (or a proxy) writes before Twirp runs."""
    return web.Response(status=status, text=text, content_type="text/plain", charset="utf-8")
