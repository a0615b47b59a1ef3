"""The dispatcher benchmark's library floor: its webhook endpoint checks what livekit-api's
WebhookReceiver checks, the Redis floor cleans up after itself, the sum adds up."""

from __future__ import annotations

import os

import pytest
from aiohttp.test_utils import TestClient, TestServer
from livekit import api
from redis.asyncio import Redis

from bench import dispatcher_floor

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def _post(body: str, token: str) -> int:
    app = dispatcher_floor.webhook_app(dispatcher_floor.KEY, dispatcher_floor.SECRET)
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/webhook", data=body, headers={"Authorization": f"Bearer {token}"}
        )
        return response.status


async def test_the_floor_endpoint_takes_a_signed_webhook_as_webhook_receiver_does() -> None:
    body = dispatcher_floor._agent_joined_body()
    token = dispatcher_floor._signed(body)
    receiver = api.WebhookReceiver(api.TokenVerifier(dispatcher_floor.KEY, dispatcher_floor.SECRET))
    assert receiver.receive(body, token).event == "participant_joined"
    assert await _post(body, token) == 200


async def test_the_floor_endpoint_refuses_a_tampered_body() -> None:
    body = dispatcher_floor._agent_joined_body()
    token = dispatcher_floor._signed(body)
    assert await _post(body.replace("participant_joined", "participant_left"), token) == 401


def test_the_check_alone_is_timed_on_a_webhook_it_accepts() -> None:
    assert dispatcher_floor.webhook_check_cpu_us(rounds=20) > 0


async def test_the_redis_floor_does_its_work_and_leaves_nothing_behind() -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        before = {key async for key in redis.scan_iter("bench-floor-*")}
        assert await dispatcher_floor.redis_cpu_us_per_dispatch(REDIS_URL, dispatches=50) > 0
        assert {key async for key in redis.scan_iter("bench-floor-*")} == before
    finally:
        await redis.aclose()


def test_the_floor_adds_calls_webhooks_and_redis_per_dispatch() -> None:
    figures = dispatcher_floor.floor_figures(
        call_us=200.0,
        served_webhook_us=150.0,
        check_us=50.0,
        redis_us=60.0,
        calls_per_dispatch=2.0,
        webhooks_per_dispatch=3.0,
    )
    assert figures["livekit_api_only_ms_per_dispatch"] == pytest.approx(0.55)
    assert figures["with_webhooks_served_ms_per_dispatch"] == pytest.approx(0.85)
    assert figures["floor_ms_per_dispatch"] == pytest.approx(0.91)
