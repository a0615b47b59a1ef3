"""/healthz, /readyz, /metrics, and what happens while Redis is away and when it returns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlparse

import httpx
import pytest_asyncio
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from agentline.settings import TokenApiSettings
from agentline.tcp_proxy import CuttableProxy
from token_api.app import create_app
from token_api.testing import AUTH, serving

Client = AsyncTestClient[Litestar]


async def test_healthz_needs_nothing(make_settings: Callable[..., TokenApiSettings]) -> None:
    app = create_app(make_settings(redis_url="redis://127.0.0.1:1/0"))
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_needs_the_dispatcher_group(client: Client, redis_client: Redis) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["checks"] == {"redis": True, "dispatcher_group": False}


async def test_readyz_when_ready(client: Client, dispatcher_group: str) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"ready": True, "checks": {"redis": True, "dispatcher_group": True}}


async def test_metrics_count_sessions_per_agent_and_publish_latency(client: Client) -> None:
    def value(text: str, prefix: str) -> float:
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = (await client.get("/metrics")).text
    assert (
        await client.post("/v1/sessions", json={"agent_name": "concierge"}, headers=AUTH)
    ).status_code == 201
    assert (
        await client.post("/v1/sessions", json={"agent_name": "bogus"}, headers=AUTH)
    ).status_code == 422
    response = await client.get("/metrics")
    assert response.status_code == 200
    after = response.text
    created = 'token_api_sessions_created_total{agent_name="concierge"}'
    assert value(after, created) == value(before, created) + 1
    count = "token_api_publish_latency_seconds_count"
    assert value(after, count) == value(before, count) + 1
    # Litestar's request metrics, by route template, unhandled paths left out
    assert 'path="/v1/sessions"' in after
    await client.get("/no/such/path")
    assert "/no/such/path" not in (await client.get("/metrics")).text


@pytest_asyncio.fixture
async def proxy(redis_url: str) -> AsyncIterator[CuttableProxy]:
    parsed = urlparse(redis_url)
    flaky = CuttableProxy(parsed.hostname or "127.0.0.1", parsed.port or 6379)
    await flaky.start()
    try:
        yield flaky
    finally:
        await flaky.stop()


async def test_redis_outage_is_503_and_recovers_without_restart(
    make_settings: Callable[..., TokenApiSettings],
    proxy: CuttableProxy,
    redis_client: Redis,
    dispatcher_group: str,
) -> None:
    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{proxy.port}/0"))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as client:
        assert (await client.post("/v1/sessions", json={}, headers=AUTH)).status_code == 201
        assert (await client.get("/readyz")).status_code == 200

        await proxy.stop()
        for path, method in (
            ("/v1/sessions", "POST"),
            ("/v1/dispatches", "POST"),
            ("/v1/dispatches/dsp_0123456789abcdefghjkmnpqrs", "GET"),
            ("/v1/agents", "GET"),
        ):
            response = await asyncio.wait_for(
                client.request(
                    method, path, json={"room": "r"} if method == "POST" else None, headers=AUTH
                ),
                10,
            )
            assert response.status_code == 503, (path, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["retry-after"] == "2"
        not_ready = await client.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["checks"]["redis"] is False
        assert (await client.get("/healthz")).status_code == 200

        await proxy.start()  # same port: Redis is back
        for _ in range(50):
            response = await client.post("/v1/sessions", json={}, headers=AUTH)
            if response.status_code == 201:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 201, response.text
        assert (await client.get("/readyz")).status_code == 200
