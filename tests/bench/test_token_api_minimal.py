"""The token-api benchmark's minimal reference does what its doc says: one atomic write of the
record and the request, then a token for the room."""

from __future__ import annotations

import os
import uuid

import pytest
from litestar.testing import AsyncTestClient
from livekit import api
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.redis_conn import delete_namespace
from bench.token_api_minimal import minimal_app

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
KEY, SECRET = "minkey", "minimal-secret-0123456789abcdef0123456789"


async def test_a_session_is_recorded_published_and_given_a_token_for_its_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = Keys(f"test-minimal-{uuid.uuid4().hex[:8]}")
    for name, value in {
        "AGENTLINE_REDIS_NAMESPACE": keys.namespace,
        "REDIS_URL": REDIS_URL,
        "LIVEKIT_API_KEY": KEY,
        "LIVEKIT_API_SECRET": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        async with AsyncTestClient(minimal_app()) as client:
            response = await client.post("/minimal/sessions", json={"identity": "ann"})
        assert response.status_code == 201
        session = response.json()
        assert session["identity"] == "ann"
        assert session["room"].startswith("travel-room-")
        record = await redis.hgetall(keys.dispatch(session["dispatch_id"]))
        assert record["room"] == session["room"]
        assert record["state"] == "requested"
        [(_, entry)] = await redis.xrange(keys.requests)
        assert entry["dispatch_id"] == session["dispatch_id"]
        claims = api.TokenVerifier(KEY, SECRET).verify(session["token"])
        assert claims.identity == "ann"
        assert claims.video is not None and claims.video.room == session["room"]
    finally:
        await delete_namespace(redis, keys)
        await redis.aclose()
