"""``livekit-emulator``: run the emulator as a server.

    livekit-emulator --port 7880 --keys devkey:secret --webhook-url http://127.0.0.1:8081/webhooks \\
        --simulated-worker travel-assistant:10 --real-timing

Development and tests only: production always points at a real LiveKit server or LiveKit Cloud.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys

from .config import DEFAULT_API_KEY, DEFAULT_API_SECRET, EmulatorConfig, SimulatedWorkerSpec
from .server import Emulator


def parse_keys(text: str) -> dict[str, str]:
    """``key:secret[,key2:secret2]`` (also accepts ``key: secret`` with a space)."""
    keys: dict[str, str] = {}
    for part in text.split(","):
        key, sep, secret = part.partition(":")
        if not sep or not key.strip() or not secret.strip():
            raise argparse.ArgumentTypeError(f"expected KEY:SECRET, got {part!r}")
        keys[key.strip()] = secret.strip()
    return keys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="livekit-emulator",
        description=(
            "A LiveKit server emulator for development and tests: Twirp RoomService and "
            "AgentDispatchService, the /agent worker protocol, signed webhooks, simulated "
            "workers and fault injection (admin API under /emulator/). Never a production "
            "path: deployments point at a real LiveKit server or LiveKit Cloud."
        ),
    )
    p.add_argument("--host", default=os.environ.get("LIVEKIT_EMULATOR_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("LIVEKIT_EMULATOR_PORT", "7880")))
    p.add_argument(
        "--keys",
        type=parse_keys,
        default=None,
        help=f"API keys as KEY:SECRET[,KEY:SECRET] (default {DEFAULT_API_KEY}:<built-in dev secret>)",
    )
    p.add_argument(
        "--webhook-url",
        action="append",
        default=[],
        dest="webhook_urls",
        help="send webhooks to this URL (repeatable)",
    )
    p.add_argument(
        "--simulated-worker",
        action="append",
        default=[],
        dest="simulated_workers",
        metavar="NAME:CAPACITY",
        type=SimulatedWorkerSpec.parse,
        help="register a simulated worker for agent NAME taking up to CAPACITY jobs (repeatable)",
    )
    p.add_argument(
        "--real-timing",
        action="store_true",
        help="reproduce the real server's loopback timing instead of answering instantly",
    )
    p.add_argument("--departure-timeout", type=float, default=20.0, help="seconds (default 20)")
    p.add_argument("--empty-timeout", type=float, default=300.0, help="seconds (default 300)")
    p.add_argument(
        "--availability-timeout",
        type=float,
        default=10.0,
        help="seconds a worker has to answer an availability request (default 10)",
    )
    p.add_argument(
        "--assignment-url",
        default="",
        help="URL put in JobAssignment (the real server leaves it empty: workers keep theirs)",
    )
    p.add_argument(
        "--webhook-queue-size",
        type=int,
        default=100,
        help="events waiting per webhook sender before new ones are dropped (default 100)",
    )
    p.add_argument("--log-level", default="INFO")
    return p


async def _run(args: argparse.Namespace) -> None:
    config = EmulatorConfig(
        keys=args.keys or {DEFAULT_API_KEY: DEFAULT_API_SECRET},
        webhook_urls=args.webhook_urls,
        simulated_workers=args.simulated_workers,
        real_timing=args.real_timing,
        departure_timeout=args.departure_timeout,
        empty_timeout=args.empty_timeout,
        availability_timeout=args.availability_timeout,
        assignment_url=args.assignment_url,
        webhook_queue_size=args.webhook_queue_size,
    )
    emu = Emulator(config)
    await emu.start(args.host, args.port)
    # A full collection walks every start-up object (~100 ms here): a pause in every Twirp
    # answer and webhook that a real server (Go) does not have. Frozen, they are skipped.
    gc.collect()
    gc.freeze()
    print(f"livekit-emulator listening on {emu.ws_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emu.stop()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
