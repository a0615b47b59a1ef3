"""``dispatcher``: consume dispatch requests, drive each one through LiveKit until the agent
speaks or the dispatch fails with a named reason."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from agentline import logs
from agentline.heap import freeze_startup_objects
from agentline.settings import DispatcherSettings, load_settings
from agentline.telemetry import setup_tracing
from dispatcher.service import DispatcherService

DESCRIPTION = """\
agentline dispatcher: reads dispatch requests from the Redis stream (consumer group
'dispatchers'), gets the agent into the room through LiveKit (CreateRoom with the agent for a
new room, CreateDispatch otherwise), tracks dispatched -> assigned -> joined -> speaking from
worker events, signed webhooks and polling, retries without ever putting two agents in one
room, and fails with a named reason otherwise.

HTTP (DISPATCHER_PORT, default 8081): POST /webhooks/livekit, GET /healthz, /readyz, /metrics.
Settings come from the environment: REDIS_URL, LIVEKIT_URL, LIVEKIT_API_KEY,
LIVEKIT_API_SECRET and DISPATCHER_* (see docs/operations.md). SIGTERM drains in-flight work
within DISPATCHER_DRAIN_SECONDS and exits 0.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dispatcher",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, help="HTTP port (overrides DISPATCHER_PORT)")
    parser.add_argument("--host", help="bind address (overrides DISPATCHER_HOST)")
    return parser.parse_args(argv)


async def serve(settings: DispatcherSettings) -> None:
    service = DispatcherService(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    freeze_startup_objects()
    await stop.wait()
    await service.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {k: v for k, v in (("port", args.port), ("host", args.host)) if v is not None}
    settings = load_settings(DispatcherSettings, **overrides)
    if not settings.livekit_api_secret.get_secret_value() or not settings.livekit_api_key:
        print("dispatcher: invalid setting: LIVEKIT_API_SECRET: must not be empty", file=sys.stderr)
        raise SystemExit(2)
    logs.setup("dispatcher", settings.log_level, settings.log_format, settings.is_production)
    setup_tracing("dispatcher")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
