"""The emulator: one aiohttp application serving Twirp, ``/agent`` and the admin API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import services  # noqa: F401  (registers the Twirp handlers)
from .admin import admin_routes
from .agent_ws import AgentConnection, handle_agent
from .appkeys import EMULATOR
from .config import EmulatorConfig, SimulatedWorkerSpec
from .engine import DispatchEngine
from .faults import Fault, Faults
from .rooms import RoomManager
from .rtc import add_routes as add_rtc_routes
from .simulated import SimulatedWorker
from .state import State
from .timing import make_timing
from .twirp import abort_connection, handle_twirp
from .webhooks import WebhookNotifier

logger = logging.getLogger("livekit_emulator")

ADMIN_PREFIX = "/emulator/"


@web.middleware
async def refuse_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    emu: Emulator = request.app[EMULATOR]
    if emu.faults.refusing() and not request.path.startswith(ADMIN_PREFIX):
        emu.faults.refused += 1
        return abort_connection(request)
    return await handler(request)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="OK")


class Emulator:
    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.state = State()
        self.timing = make_timing(self.config.real_timing)
        self.faults = Faults()
        self.webhooks = WebhookNotifier(self.config, self.state)
        self.engine = DispatchEngine(self)
        self.rooms = RoomManager(self)
        self.simulated: list[SimulatedWorker] = []
        self.connections: set[AgentConnection] = set()
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[refuse_middleware])
        self.app[EMULATOR] = self
        self.app.router.add_get("/", _healthz)
        self.app.router.add_route("*", "/twirp/{service}/{method}", handle_twirp)
        self.app.router.add_get("/agent", handle_agent)
        self.app.router.add_routes(admin_routes())
        self.rtc = add_rtc_routes(self.app, self)  # /rtc signalling and WebRTC media

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        if port == 0:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            site: web.BaseSite = web.SockSite(self._runner, sock)
            self.port = sock.getsockname()[1]
        else:
            site = web.TCPSite(self._runner, host, port)
            self.port = port
        await site.start()
        await self.webhooks.start()
        for spec in self.config.simulated_workers:
            self.add_simulated_worker(spec)
        logger.info("LiveKit emulator listening on %s", self.http_url)

    async def stop(self) -> None:
        for sim in self.simulated:
            sim.remove(agents_leave=False)
        self.simulated.clear()
        for conn in list(self.connections):
            conn.close()
        self._clear_rooms()
        await self.engine.close()
        await self.webhooks.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _clear_rooms(self) -> None:
        for room in self.state.rooms.values():
            room.closed = True
            if room.close_timer is not None:
                room.close_timer.cancel()
        self.state.rooms.clear()

    # -- admin operations (also served under /emulator/) -------------------------------------

    def add_simulated_worker(
        self, spec: SimulatedWorkerSpec | str, capacity: int | None = None, **options: Any
    ) -> SimulatedWorker:
        if isinstance(spec, str):
            spec = SimulatedWorkerSpec(agent_name=spec, capacity=capacity or 10, **options)
        sim = SimulatedWorker(self, spec)
        self.simulated.append(sim)
        sim.connect()
        return sim

    def remove_worker(
        self, worker_id: str | None = None, agent_name: str | None = None, agents_leave: bool = True
    ) -> list[str]:
        """Remove simulated workers (and disconnect real ones) by id or agent name."""
        removed: list[str] = []
        for sim in list(self.simulated):
            wid = sim.worker.id if sim.worker else None
            if (worker_id is not None and wid == worker_id) or (
                worker_id is None and agent_name is not None and sim.agent_name == agent_name
            ):
                removed.append(wid or "")
                sim.remove(agents_leave=agents_leave)
                self.simulated.remove(sim)
        for worker in list(self.state.workers.values()):
            if worker.simulated:
                continue
            if worker.id == worker_id or (worker_id is None and worker.agent_name == agent_name):
                removed.append(worker.id)
                worker.close()
        return removed

    def set_fault(self, method: str, **options: Any) -> Fault:
        return self.faults.set(Fault(method=method, **options))

    def clear_faults(self) -> None:
        self.faults.clear()

    def workers_ignore_availability(self, agent_name: str, on: bool = True) -> None:
        if on:
            self.state.ignore_availability.add(agent_name)
        else:
            self.state.ignore_availability.discard(agent_name)

    def close_worker_sockets(self, agent_name: str | None = None) -> int:
        closed = 0
        for worker in list(self.state.workers.values()):
            if agent_name is None or worker.agent_name == agent_name:
                worker.close()
                closed += 1
        return closed

    def refuse_all(self, seconds: float) -> None:
        self.faults.refuse_for(seconds)

    def set_webhooks(self, drop: bool | None = None, delay_s: float | None = None) -> None:
        if drop is not None:
            self.webhooks.drop = drop
        if delay_s is not None:
            self.webhooks.delay_s = max(0.0, delay_s)

    def agents_in_room(self, room: str) -> list[str]:
        return self.state.agents_in_room(room)

    def max_agents_seen_in_room(self, room: str) -> int:
        return self.state.max_agents_seen.get(room, 0)

    def reset(self) -> None:
        """Back to a fresh start: no rooms, dispatches, jobs, faults or recorded events; the
        simulated workers of the configuration re-registered; real workers stay connected."""
        for sim in self.simulated:
            sim.remove(agents_leave=False)
        self.simulated.clear()
        self._clear_rooms()
        for worker in self.state.workers.values():
            worker.running_jobs.clear()
        workers = list(self.state.workers.values())
        self.state.clear()
        for worker in workers:
            self.state.add_worker(worker)
        self.faults.clear()
        self.webhooks.drop = False
        self.webhooks.delay_s = 0.0
        for spec in self.config.simulated_workers:
            self.add_simulated_worker(spec)

    def snapshot(self) -> dict[str, Any]:
        data = self.state.snapshot()
        data["simulated_workers"] = [s.summary() for s in self.simulated]
        data["faults"] = self.faults.snapshot()
        data["webhooks"] = {
            "urls": self.webhooks.urls,
            "drop": self.webhooks.drop,
            "delay_s": self.webhooks.delay_s,
            "stats": dict(self.webhooks.stats),
            "events": list(self.state.events),
            "deliveries": list(self.webhooks.deliveries),
        }
        data["real_timing"] = self.config.real_timing
        return data


@contextlib.asynccontextmanager
async def serve(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0):  # type: ignore[no-untyped-def]
    emu = Emulator(config)
    await emu.start(host, port)
    try:
        yield emu
    finally:
        await emu.stop()
