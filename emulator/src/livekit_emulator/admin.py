"""The admin HTTP API under ``/emulator/`` (not part of LiveKit's API).

Every route answers JSON; errors are ``{"error": "..."}`` with status 400 or 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .appkeys import EMULATOR
from .config import SimulatedWorkerSpec

if TYPE_CHECKING:
    from .server import Emulator

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _emu(request: web.Request) -> Emulator:
    return request.app[EMULATOR]


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text='{"error": "a JSON object is expected"}', content_type="application/json"
        )
    return data


def _guard(fn: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except (TypeError, ValueError, KeyError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    return wrapped


@routes.get("/emulator/state")
async def state(request: web.Request) -> web.Response:
    return web.json_response(_emu(request).snapshot())


@routes.post("/emulator/reset")
async def reset(request: web.Request) -> web.Response:
    _emu(request).reset()
    return web.json_response({"ok": True})


@routes.post("/emulator/workers")
@_guard
async def add_worker(request: web.Request) -> web.Response:
    body = await _body(request)
    spec = SimulatedWorkerSpec(
        agent_name=str(body["agent_name"]),
        capacity=int(body.get("capacity", 10)),
        join_delay_s=body.get("join_delay_s"),
        publish_delay_s=body.get("publish_delay_s"),
        accept=bool(body.get("accept", True)),
        publish_audio=bool(body.get("publish_audio", True)),
        join=bool(body.get("join", True)),
    )
    sim = _emu(request).add_simulated_worker(spec)
    return web.json_response({"worker_id": sim.worker.id if sim.worker else None})


@routes.post("/emulator/workers/remove")
@_guard
async def remove_worker(request: web.Request) -> web.Response:
    body = await _body(request)
    if not body.get("worker_id") and body.get("agent_name") is None:
        raise ValueError("worker_id or agent_name is required")
    removed = _emu(request).remove_worker(
        worker_id=body.get("worker_id"),
        agent_name=body.get("agent_name"),
        agents_leave=bool(body.get("agents_leave", True)),
    )
    return web.json_response({"removed": removed})


@routes.post("/emulator/workers/ignore-availability")
@_guard
async def ignore_availability(request: web.Request) -> web.Response:
    body = await _body(request)
    _emu(request).workers_ignore_availability(str(body["agent_name"]), bool(body.get("on", True)))
    return web.json_response({"ok": True})


@routes.post("/emulator/workers/close-sockets")
@_guard
async def close_sockets(request: web.Request) -> web.Response:
    body = await _body(request)
    closed = _emu(request).close_worker_sockets(body.get("agent_name"))
    return web.json_response({"closed": closed})


@routes.post("/emulator/faults")
@_guard
async def set_fault(request: web.Request) -> web.Response:
    body = await _body(request)
    method = str(body.pop("method"))
    fault = _emu(request).set_fault(method, **body)
    return web.json_response(fault.to_dict())


@routes.delete("/emulator/faults")
async def clear_faults(request: web.Request) -> web.Response:
    _emu(request).clear_faults()
    return web.json_response({"ok": True})


@routes.post("/emulator/refuse")
@_guard
async def refuse(request: web.Request) -> web.Response:
    body = await _body(request)
    _emu(request).refuse_all(float(body["seconds"]))
    return web.json_response({"ok": True})


@routes.post("/emulator/webhooks")
@_guard
async def webhooks(request: web.Request) -> web.Response:
    body = await _body(request)
    emu = _emu(request)
    emu.set_webhooks(drop=body.get("drop"), delay_s=body.get("delay_s"))
    return web.json_response({"drop": emu.webhooks.drop, "delay_s": emu.webhooks.delay_s})


@routes.get("/emulator/agents")
async def room_agents(request: web.Request) -> web.Response:
    emu = _emu(request)
    room = request.query.get("room", "")
    agents = emu.agents_in_room(room)
    return web.json_response(
        {
            "room": room,
            "agents": agents,
            "count": len(agents),
            "max_seen": emu.max_agents_seen_in_room(room),
        }
    )


def admin_routes() -> web.RouteTableDef:
    return routes
