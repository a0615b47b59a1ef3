"""The stand-in's HTTP/WebSocket server: ``GET /v1/realtime?model=…`` (and ``/realtime``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from agent_worker.realtime_standin import protocol
from agent_worker.realtime_standin.config import DEFAULT_STANDIN_KEY, StandinConfig, StandinStats
from agent_worker.realtime_standin.session import RealtimeConnection

log = logging.getLogger("agent_worker.realtime_standin")


def _bearer_key(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def _realtime(request: web.Request) -> web.StreamResponse:
    config: StandinConfig = request.app[CONFIG_KEY]
    stats: StandinStats = request.app[STATS_KEY]
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    stats.connections += 1

    async def send(event: dict[str, Any]) -> None:
        await ws.send_str(json.dumps(event))

    # The real API accepts the upgrade, then answers a bad key or model with an error
    # event and closes with code 3000: clients see the error, not an HTTP status.
    key = _bearer_key(request)
    model = request.query.get("model", "gpt-realtime")
    refusal: dict[str, Any] | None = None
    if not key:
        refusal = protocol.missing_key_error()
    elif not config.accepts_key(key):
        refusal = protocol.invalid_key_error(key)
    elif not config.accepts_model(model):
        refusal = protocol.unknown_model_error(model)
    if refusal is not None:
        stats.rejected_keys += refusal["error"]["code"] != "model_not_found"
        await send(refusal)
        reason = f"{refusal['error']['type']}.{refusal['error']['code']}"
        await ws.close(code=protocol.CLOSE_CODE_REQUEST_ERROR, message=reason.encode())
        return ws

    conn = RealtimeConnection(send, config, stats, model)
    request.app[CONNECTIONS_KEY].add(ws)
    try:
        await conn.start()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await conn.handle_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await send(protocol.error_event(
                    "Binary frames are not supported; send JSON text events.",
                    code="invalid_request_error"))  # fmt: skip
            elif msg.type == WSMsgType.ERROR:
                break
    except (ConnectionResetError, RuntimeError) as exc:
        log.debug("realtime connection dropped: %s", exc)
    finally:
        request.app[CONNECTIONS_KEY].discard(ws)
        await conn.close()
    return ws


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _on_shutdown(app: web.Application) -> None:
    sockets: _OpenSockets = app[CONNECTIONS_KEY]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"server shutting down")


CONFIG_KEY = web.AppKey("config", StandinConfig)
STATS_KEY = web.AppKey("stats", StandinStats)


class _OpenSockets(set[web.WebSocketResponse]):
    """The connections to close on shutdown."""


CONNECTIONS_KEY = web.AppKey("connections", _OpenSockets)


def create_app(config: StandinConfig, stats: StandinStats | None = None) -> web.Application:
    app = web.Application()
    app[CONFIG_KEY] = config
    app[STATS_KEY] = stats or StandinStats()
    app[CONNECTIONS_KEY] = _OpenSockets()
    for path in ("/v1/realtime", "/realtime", "/openai/v1/realtime"):
        app.router.add_get(path, _realtime)
    app.router.add_get("/healthz", _healthz)
    app.on_shutdown.append(_on_shutdown)
    return app


@dataclass
class RunningStandin:
    host: str
    port: int
    config: StandinConfig
    stats: StandinStats = field(default_factory=StandinStats)

    @property
    def url(self) -> str:
        """The base URL to give the plugin (``base_url=`` / ``OPENAI_BASE_URL``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/realtime"


@contextlib.asynccontextmanager
async def running_standin(
    config: StandinConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningStandin]:
    """Serve the stand-in in this event loop; ``port=0`` picks a free port."""
    config = config or StandinConfig()
    stats = StandinStats()
    runner = web.AppRunner(create_app(config, stats), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    bound_port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield RunningStandin(host=host, port=bound_port, config=config, stats=stats)
    finally:
        await runner.cleanup()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="realtime-standin",
        description="A local stand-in for the OpenAI Realtime API (tests and `make dev`).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--api-key", action="append", dest="api_keys",
                        help=f"accepted key (repeatable; default {DEFAULT_STANDIN_KEY})")  # fmt: skip
    parser.add_argument("--accept-any-key", action="store_true",
                        help="accept every non-empty key")  # fmt: skip
    parser.add_argument("--pace", type=float, default=1.0,
                        help="1.0 streams audio in real time, 0 as fast as possible")  # fmt: skip
    parser.add_argument("--first-audio-delay-ms", type=int, default=250)
    args = parser.parse_args(argv)
    if args.pace < 0 or args.first_audio_delay_ms < 0 or not 0 < args.port < 65536:
        parser.error("--pace and --first-audio-delay-ms must be >= 0, --port in 1..65535")
    return args


async def _serve(args: argparse.Namespace) -> None:
    keys = None if args.accept_any_key else frozenset(args.api_keys or [DEFAULT_STANDIN_KEY])
    config = StandinConfig(api_keys=keys, pace=args.pace,
                           first_audio_delay_ms=args.first_audio_delay_ms)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_standin(config, host=args.host, port=args.port) as standin:
        log.info("realtime stand-in listening", extra={"base_url": standin.url})
        print(f"realtime-standin: OPENAI_BASE_URL={standin.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_serve(_parse_args(argv)))
