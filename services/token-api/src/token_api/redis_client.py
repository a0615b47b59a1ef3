"""The Redis client of the request path.

redis-py's asyncio connection encodes every argument in Python; a dispatch create carries ~45
of them and packing alone cost more than the rest of the Redis call. The connection below packs
with hiredis' C encoder (the same RESP bytes), which redis-py already uses for its synchronous
client. A plain pool (not the blocking one) hands out connections without a wait timer;
socket timeouts still bound a stalled Redis.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection

CONNECT_TIMEOUT_SECONDS = 2.0


class HiredisPackConnection(Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        # Multi-word command names ('XINFO GROUPS') go to Redis as separate arguments.
        if (isinstance(first, str) and " " in first) or (
            isinstance(first, bytes) and b" " in first
        ):
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]


def redis_client(url: str, socket_timeout: float) -> Redis:
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": socket_timeout,
        "health_check_interval": 15,
        "retry_on_timeout": True,
    }
    if url.startswith("redis://"):  # TLS and unix sockets keep redis-py's own classes
        options["connection_class"] = HiredisPackConnection
    return Redis(connection_pool=ConnectionPool.from_url(url, **options))
