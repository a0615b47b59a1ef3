"""``token-api``: serve the API with uvicorn (settings from the environment)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import uvicorn

from agentline.logs import setup as setup_logging
from agentline.redis_conn import resolve_redis_url
from agentline.settings import Environment, TokenApiSettings, load_settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="token-api",
        description=(
            "agentline token-api: mints LiveKit tokens and records dispatch requests. "
            "Settings come from the environment (TOKEN_API_*, REDIS_URL, LIVEKIT_*); "
            "the options below override a few of them."
        ),
    )
    parser.add_argument("--host", help="bind address (TOKEN_API_HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="HTTP port (TOKEN_API_PORT, default 8080)")
    parser.add_argument("--workers", type=int, help="uvicorn worker processes (TOKEN_API_WORKERS)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = load_settings(TokenApiSettings, **overrides)
    setup_logging(
        "token-api", settings.log_level, settings.log_format, production=settings.is_production
    )
    # In development an embedded Redis starts when none answers; resolved once here so that
    # every worker process shares it.
    redis_url, embedded = asyncio.run(
        resolve_redis_url(
            settings.redis_url, allow_embedded=settings.environment is Environment.DEVELOPMENT
        )
    )
    os.environ["REDIS_URL"] = redis_url
    for name, value in overrides.items():
        os.environ[f"TOKEN_API_{name.upper()}"] = str(value)
    try:
        uvicorn.run(
            "token_api.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            # httptools with one socket write per response (see token_api.serving)
            http="token_api.serving:CoalescingHttpToolsProtocol",
            access_log=False,  # one log line per request would cost more than the request
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=10,
        )
    finally:
        if embedded is not None:
            asyncio.run(embedded.stop())


if __name__ == "__main__":
    main(sys.argv[1:])
