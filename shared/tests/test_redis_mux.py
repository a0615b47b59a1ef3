"""The pipelined connection used by the session hot path, on real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import uvloop
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentline.keys import Keys
from agentline.redis_conn import delete_namespace
from agentline.redis_mux import MuxRedis
from agentline.schema import DispatchRequest
from agentline.store import DispatchStore


async def test_concurrent_commands_get_their_own_replies(
    redis_url: str, keys: Keys, redis_client: Redis
) -> None:
    mux = MuxRedis(redis_url)
    echo = mux.register_script("return {KEYS[1], ARGV[1]}")
    try:
        replies = await asyncio.gather(
            *[echo(keys=[f"{keys.prefix}:k{i}"], args=[i]) for i in range(200)]
        )
    finally:
        await mux.aclose()
    assert replies == [[f"{keys.prefix}:k{i}", str(i)] for i in range(200)]


async def test_unknown_script_is_loaded_then_run(redis_url: str) -> None:
    mux = MuxRedis(redis_url)
    fresh = mux.register_script(f"return '{uuid.uuid4().hex}'")  # never loaded before
    try:
        first = await fresh()
        assert first == await fresh()
    finally:
        await mux.aclose()


async def test_script_errors_are_response_errors_and_the_line_stays_in_step(redis_url: str) -> None:
    mux = MuxRedis(redis_url)
    boom = mux.register_script("return redis.error_reply('BOOM nope')")
    ok = mux.register_script("return ARGV[1]")
    try:
        results = await asyncio.gather(
            boom(), ok(args=["a"]), boom(), ok(args=["b"]), return_exceptions=True
        )
    finally:
        await mux.aclose()
    assert isinstance(results[0], ResponseError) and "BOOM" in str(results[0])
    assert results[1] == "a" and results[3] == "b"
    assert isinstance(results[2], ResponseError)


async def test_unreachable_redis_is_a_connection_error(redis_url: str) -> None:
    mux = MuxRedis("redis://127.0.0.1:1/0", connect_timeout=1.0)
    with pytest.raises(RedisConnectionError):
        await mux.register_script("return 1")()


def test_store_create_on_uvloop(redis_url: str, keys: Keys) -> None:
    """Production runs on uvloop, whose transports differ from asyncio's."""

    async def main() -> list[str]:
        mux = MuxRedis(redis_url)
        store = DispatchStore(mux, keys)  # type: ignore[arg-type]
        try:
            results = await asyncio.gather(
                *[
                    store.create(DispatchRequest(f"dsp_uv{i}", "room", "travel-assistant"))
                    for i in range(20)
                ]
            )
            return [r.dispatch_id for r in results if r.created]
        finally:
            await mux.aclose()
            cleanup = Redis.from_url(redis_url)
            await delete_namespace(cleanup, keys)
            await cleanup.aclose()

    created = uvloop.run(main())
    assert created == [f"dsp_uv{i}" for i in range(20)]


async def test_silent_redis_times_out_and_the_next_call_reconnects() -> None:
    """A server that accepts and never answers: the waiting command fails with a timeout,
    the connection is dropped (later replies could not be matched), the next call redials."""
    connections = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read()  # until the client closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    mux = MuxRedis(f"redis://127.0.0.1:{port}/0", timeout=0.3)
    script = mux.register_script("return 1")
    try:
        for _ in range(2):
            with pytest.raises(RedisTimeoutError):
                await script()
        assert connections == 2
    finally:
        await mux.aclose()
        server.close()
        await server.wait_closed()
