"""``agent-worker``: the travel assistant's LiveKit worker.

Settings come from the environment (``AGENT_WORKER_*``, ``LIVEKIT_*``, ``REDIS_URL``,
``OPENAI_API_KEY``); the few options here override them for a quick local run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="agent-worker",
        description="The travel assistant's LiveKit worker (settings from the environment).",
    )
    parser.add_argument("--agent-name", help="agent_name to register (AGENT_WORKER_AGENT_NAME)")
    parser.add_argument("--max-jobs", type=int, help="capacity (AGENT_WORKER_MAX_JOBS)")
    parser.add_argument("--port", type=int, help="HTTP port (AGENT_WORKER_PORT)")
    return parser.parse_args(argv)


async def _serve(app: object) -> int:
    from agent_worker.app import WorkerApp

    assert isinstance(app, WorkerApp)
    loop = asyncio.get_running_loop()
    signals = 0

    def _on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:  # a second signal: the operator wants out now
            logging.getLogger("agent_worker").warning("second %s: exiting now", sig.name)
            os._exit(1)
        app.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig)
    return await app.run()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    # imported here so `--help` stays fast and the settings error path stays clean
    from agent_worker.app import WorkerApp
    from agentline.logs import setup as setup_logging
    from agentline.settings import AgentWorkerSettings, load_settings

    overrides = {
        key: value
        for key, value in (
            ("agent_name", args.agent_name),
            ("max_jobs", args.max_jobs),
            ("port", args.port),
        )
        if value is not None
    }
    settings = load_settings(AgentWorkerSettings, **overrides)
    setup_logging(
        "agent-worker",
        level=settings.log_level,
        fmt=settings.log_format,
        production=settings.is_production,
    )
    sys.exit(asyncio.run(_serve(WorkerApp(settings))))
