"""Twirp over HTTP as livekit-server serves it: ``POST /twirp/livekit.<Service>/<Method>``
with protobuf or JSON bodies, Twirp JSON errors, and faults injected per method."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from google.protobuf.message import Message
from livekit.protocol import agent_dispatch, room

from .appkeys import EMULATOR
from .auth import AuthFailure, Grants, verify
from .errors import TwirpError, plain_text
from .faults import Fault
from .protojson import MalformedRequest, parse_json, parse_protobuf, twirp_json

if TYPE_CHECKING:
    from .server import Emulator

logger = logging.getLogger("livekit_emulator.twirp")

Handler = Callable[["Emulator", Grants | None, Any], Awaitable[Message]]

JSON = "application/json"
PROTOBUF = "application/protobuf"

_DESCRIPTORS = {
    "livekit.RoomService": room.DESCRIPTOR.services_by_name["RoomService"],
    "livekit.AgentDispatchService": agent_dispatch.DESCRIPTOR.services_by_name[
        "AgentDispatchService"
    ],
}
_MODULES = {"livekit.RoomService": room, "livekit.AgentDispatchService": agent_dispatch}


class Router:
    def __init__(self) -> None:
        self.handlers: dict[tuple[str, str], tuple[type[Message], Handler]] = {}
        # Every method of the two services: the ones without a handler answer unimplemented.
        self.known: dict[tuple[str, str], type[Message]] = {}
        for service, desc in _DESCRIPTORS.items():
            module = _MODULES[service]
            for method in desc.methods:
                cls = getattr(module, method.input_type.name, None)
                if cls is None:  # input type defined in another module
                    from livekit.protocol import models

                    cls = getattr(models, method.input_type.name)
                self.known[(service, method.name)] = cls

    def route(self, service: str, method: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.handlers[(service, method)] = (self.known[(service, method)], fn)
            return fn

        return register


router = Router()


def abort_connection(request: web.Request) -> web.StreamResponse:
    """Reset the connection: the client sees it dropped without an answer."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)


def _bad_route(msg: str, path: str, method: str = "POST") -> TwirpError:
    return TwirpError("bad_route", msg, {"twirp_invalid_route": f"{method} {path}"})


async def _apply_fault(request: web.Request, fault: Fault) -> web.StreamResponse | None:
    if fault.latency_s:
        await asyncio.sleep(fault.latency_s)
    if fault.reset_connection:
        return abort_connection(request)
    if fault.http_status:
        return plain_text(fault.http_status, f"emulator fault: HTTP {fault.http_status}")
    if fault.twirp_code:
        return TwirpError(fault.twirp_code, fault.twirp_msg or "emulator fault").to_response()
    return None


async def handle_twirp(request: web.Request) -> web.StreamResponse:
    emu: Emulator = request.app[EMULATOR]
    service = request.match_info["service"]
    method = request.match_info["method"]
    fault = emu.faults.take(method) if (service, method) in router.known else None
    if fault is not None:
        response = await _apply_fault(request, fault)
        if response is not None:
            return response
    try:
        grants = verify(request.headers.get("Authorization"), emu.config.keys)
    except AuthFailure as exc:
        return plain_text(401, str(exc))
    try:
        return await _serve(emu, request, service, method, grants)
    except TwirpError as err:
        return err.to_response()


async def _serve(
    emu: Emulator, request: web.Request, service: str, method: str, grants: Grants | None
) -> web.StreamResponse:
    path = request.path
    if request.method != "POST":
        raise _bad_route(
            f"unsupported method {request.method} (only POST is allowed)", path, request.method
        )
    route = router.handlers.get((service, method))
    if route is None:
        if (service, method) in router.known:
            raise TwirpError("unimplemented", f"{method} is not implemented by the emulator")
        raise _bad_route(f'no handler for path "{path}"', path)
    req_cls, handler = route
    content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    body = await request.read()
    try:
        if content_type == JSON:
            req = parse_json(body, req_cls)
        elif content_type == PROTOBUF:
            req = parse_protobuf(body, req_cls)
        else:
            raise _bad_route(
                f'unexpected Content-Type: "{request.headers.get("Content-Type", "")}"', path
            )
    except MalformedRequest as exc:
        kind = "json" if content_type == JSON else "protobuf"
        logger.debug("malformed %s request: %s", kind, exc)
        raise TwirpError("malformed", f"the {kind} request could not be decoded") from exc
    resp = await handler(emu, grants, req)
    if content_type == JSON:
        return web.Response(body=twirp_json(resp), content_type=JSON)
    return web.Response(body=resp.SerializeToString(), content_type=PROTOBUF)
