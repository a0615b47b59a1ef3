"""HTTP side of signalling: ``/rtc`` (v0, the WebSocket), ``/rtc/validate`` and the ``/rtc/v1``
paths.

Signalling v1 (the join request with the publisher offer in the URL, one peer connection) is
not implemented: ``/rtc/v1`` answers 404, on which the SDK (livekit 1.1.x) falls back to
``/rtc`` at once, as it does against any server older than v1 (golden
``rtc-signal/v0_fallback_session.json`` was recorded that way). Tokens are verified before the
upgrade; failures are plain-text 401s with the real server's wording.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from ..auth import AuthFailure, Grants, verify_token
from ..rooms import participant_from_claims
from . import ice_scope
from .hub import RtcHub
from .session import SignalSession

log = logging.getLogger("livekit_emulator.rtc")

HUB_KEY = web.AppKey("rtc_hub", RtcHub)
NO_PERMISSION = "no permissions to access the room"


def add_routes(app: web.Application, emu: Any) -> RtcHub:
    """Serve WebRTC signalling on ``app`` for the emulator ``emu``; returns the hub (its rooms,
    tracks and frame counts)."""
    hub = RtcHub(emu)
    ice_scope.serve(emu)  # media stays on the network the emulator listens on
    app[HUB_KEY] = hub
    app.router.add_get("/rtc", _rtc)
    app.router.add_get("/rtc/validate", _validate)
    app.router.add_get("/rtc/v1", _rtc_v1)
    app.router.add_get("/rtc/v1/validate", _validate_v1)
    app.on_shutdown.append(_close_sessions)
    return hub


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip() or None
    return request.query.get("access_token") or None


def _grants(request: web.Request) -> Grants:
    """The join grants of the request's token; ``HTTPUnauthorized`` when it has none."""
    token = _token(request)
    if token is None:
        raise web.HTTPUnauthorized(text=NO_PERMISSION)
    hub = request.app[HUB_KEY]
    try:
        grants = verify_token(token, hub.emu.config.keys)
    except AuthFailure as exc:
        raise web.HTTPUnauthorized(text=str(exc)) from exc
    if not grants.has("roomJoin") or not grants.room or not grants.identity:
        raise web.HTTPUnauthorized(text=NO_PERMISSION)
    return grants


async def _validate(request: web.Request) -> web.Response:
    _grants(request)
    return web.Response(text="success")


async def _validate_v1(request: web.Request) -> web.Response:
    _grants(request)
    if "join_request" not in request.query:
        raise web.HTTPBadRequest(text="join_request is required")
    raise web.HTTPNotFound(text="signalling v1 is not supported by the emulator: use /rtc")


async def _rtc_v1(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


async def _rtc(request: web.Request) -> web.StreamResponse:
    grants = _grants(request)
    hub = request.app[HUB_KEY]
    emu = hub.emu
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise web.HTTPNotFound()  # a plain GET, as the real server answers it
    if request.query.get("reconnect") == "1":
        # Session resumption is not emulated: refuse it so that the SDK rejoins afresh.
        raise web.HTTPNotFound(text="session resumption is not supported by the emulator")
    ws = web.WebSocketResponse(heartbeat=float(emu.config.ping_interval), max_msg_size=8 << 20)
    await ws.prepare(request)
    room, _ = emu.rooms.create(grants.room)
    participant = participant_from_claims(grants.claims, origin="rtc")
    auto_subscribe = request.query.get("auto_subscribe", "1") not in ("0", "false")
    session = SignalSession(hub, ws, room, participant, auto_subscribe)
    hub.sessions.add(session)
    try:
        await session.run()
    except Exception:
        log.exception("rtc session of %s failed", participant.identity)
    finally:
        hub.sessions.discard(session)
    return ws


async def _close_sessions(app: web.Application) -> None:
    hub = app[HUB_KEY]
    for session in list(hub.sessions):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.ws.close(), 2.0)
