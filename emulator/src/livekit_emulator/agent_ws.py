"""The ``/agent`` worker WebSocket: binary WorkerMessage / ServerMessage frames."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from google.protobuf.message import DecodeError
from livekit.protocol import agent

from . import ids
from .appkeys import EMULATOR
from .auth import AuthFailure, verify, verify_token
from .errors import plain_text
from .model import Worker

if TYPE_CHECKING:
    from .server import Emulator

logger = logging.getLogger("livekit_emulator.agent")

REGISTER_TIMEOUT_S = 10.0


async def handle_agent(request: web.Request) -> web.StreamResponse:
    emu: Emulator = request.app[EMULATOR]
    try:
        token = request.query.get("access_token")
        grants = (
            verify_token(token, emu.config.keys)
            if token
            else verify(request.headers.get("Authorization"), emu.config.keys)
        )
    except AuthFailure as exc:
        return plain_text(401, str(exc))
    ws = web.WebSocketResponse(heartbeat=emu.config.ping_interval, max_msg_size=16 * 1024 * 1024)
    if not ws.can_prepare(request).ok:
        return web.Response(status=404)
    if grants is None or not grants.has("agent"):
        return plain_text(401, "permissions denied")
    await ws.prepare(request)
    connection = AgentConnection(emu, ws, grants.api_key)
    emu.connections.add(connection)
    try:
        await connection.run()
    finally:
        emu.connections.discard(connection)
    return ws


class AgentConnection:
    def __init__(self, emu: Emulator, ws: web.WebSocketResponse, api_key: str) -> None:
        self._emu = emu
        self._ws = ws
        self._outbox: asyncio.Queue[agent.ServerMessage | None] = asyncio.Queue()
        self.worker = Worker(
            id=ids.guid(ids.WORKER), api_key=api_key, send=self._send, close=self.close
        )

    def _send(self, msg: agent.ServerMessage) -> None:
        self._outbox.put_nowait(msg)

    def close(self) -> None:
        self._outbox.put_nowait(None)

    async def _writer(self) -> None:
        while True:
            msg = await self._outbox.get()
            if msg is None:
                await self._ws.close()
                return
            try:
                await self._ws.send_bytes(msg.SerializeToString())
            except (ConnectionError, RuntimeError) as exc:
                logger.debug("send to worker %s failed: %r", self.worker.id, exc)
                return

    async def _receive(self) -> agent.WorkerMessage | None:
        while True:
            msg = await self._ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return None
            if msg.type != WSMsgType.BINARY:
                logger.debug("ignoring non-binary frame from worker %s", self.worker.id)
                continue
            parsed = agent.WorkerMessage()
            try:
                parsed.ParseFromString(msg.data)
            except DecodeError:
                logger.warning("undecodable frame from worker %s", self.worker.id)
                continue
            return parsed

    async def run(self) -> None:
        engine = self._emu.engine
        writer = asyncio.create_task(self._writer())
        try:
            registered = False
            deadline = asyncio.get_running_loop().time() + REGISTER_TIMEOUT_S
            while not registered:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    msg = await asyncio.wait_for(self._receive(), max(remaining, 0.001))
                except TimeoutError:
                    logger.info("worker did not register in time")
                    return
                if msg is None:
                    return
                which = msg.WhichOneof("message")
                if which in ("register", "ping"):
                    engine.handle_worker_message(self.worker, msg)
                    registered = which == "register"
            while True:
                msg = await self._receive()
                if msg is None:
                    return
                engine.handle_worker_message(self.worker, msg)
        finally:
            engine.worker_closed(self.worker)
            self.close()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(writer, 1.0)
            if not writer.done():
                writer.cancel()
