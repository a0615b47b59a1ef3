"""Redis unreachable: /readyz false, reconnect with backoff, and no accepted request lost."""

from __future__ import annotations

import asyncio

import aiohttp
from harness import harness
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.lifecycle import DispatchState
from agentline.tcp_proxy import CuttableProxy


async def _readyz(port: int) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as response,
    ):
        return response.status


async def test_redis_outage_then_every_request_processed(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    host, port = redis_url.split("//", 1)[1].split("/", 1)[0].split(":")
    proxy = CuttableProxy(host, int(port))
    await proxy.start()
    proxied = f"redis://127.0.0.1:{proxy.port}/0"
    try:
        async with harness(redis_client, proxied, keys) as h:
            h_port = h.port
            assert await _readyz(h_port) == 200
            before = [await h.submit() for _ in range(5)]
            proxy.set_cut(True)  # some of these are in flight now
            during = [await h.submit() for _ in range(5)]  # accepted while we are cut off
            await asyncio.sleep(1.5)
            assert await _readyz(h_port) == 503
            proxy.set_cut(False)
            for dispatch_id in before + during:
                record = await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=15)
                assert record.attempts == 1
            assert await _readyz(h_port) == 200
            for dispatch_id in before + during:
                record = await h.store.get(dispatch_id)
                assert record is not None
                assert await h.emu.admin.max_agents_seen_in_room(record.room) == 1
    finally:
        await proxy.stop()
