"""Fixtures: the app on the test's own Redis namespace, and an authenticated client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from agentline.keys import DISPATCHER_GROUP, Keys
from agentline.settings import TokenApiSettings
from token_api.app import create_app
from token_api.testing import API_KEY, LIVEKIT_KEY, LIVEKIT_SECRET, OTHER_API_KEY, serving


@pytest.fixture
def make_settings(redis_url: str, keys: Keys) -> Callable[..., TokenApiSettings]:
    def make(**overrides: Any) -> TokenApiSettings:
        values: dict[str, Any] = {
            "environment": "test",
            "redis_url": redis_url,
            "redis_namespace": keys.namespace,
            "api_keys": [API_KEY, OTHER_API_KEY],
            "livekit_url": "ws://127.0.0.1:7880",
            "livekit_api_key": LIVEKIT_KEY,
            "livekit_api_secret": LIVEKIT_SECRET,
            "allowed_agent_names": ["travel-assistant", "concierge"],
            "rate_limit_per_minute": 0,
            "sse_heartbeat_seconds": 0.2,
        }
        values.update(overrides)
        return TokenApiSettings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., TokenApiSettings]) -> TokenApiSettings:
    return make_settings()


@pytest.fixture
def app(settings: TokenApiSettings) -> Litestar:
    return create_app(settings)


@pytest_asyncio.fixture
async def client(app: Litestar, redis_client: Redis) -> AsyncIterator[AsyncTestClient[Litestar]]:
    # redis_client: removes the test's keys afterwards
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@pytest_asyncio.fixture
async def dispatcher_group(redis_client: Redis, keys: Keys) -> str:
    """The consumer group the dispatcher would create (readiness depends on it)."""
    from agentline.streams import StreamConsumer

    consumer = StreamConsumer(
        redis_client, keys.requests, DISPATCHER_GROUP, "test-consumer", keys.dead_letters
    )
    await consumer.ensure_group()
    return DISPATCHER_GROUP


@pytest_asyncio.fixture
async def live_url(app: Litestar, redis_client: Redis) -> AsyncIterator[str]:
    """The app served by uvicorn on a free loopback port (real streaming, real sockets)."""
    async with serving(app) as url:
        yield url
