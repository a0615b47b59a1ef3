"""API keys, the shared rate limit, CORS."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.settings import TokenApiSettings
from token_api.app import create_app
from token_api.ratelimit import lease_size, seconds_until_allowed
from token_api.testing import API_KEY, AUTH, OTHER_API_KEY

Client = AsyncTestClient[Litestar]


async def test_no_key_or_wrong_key_is_401_without_token(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"X-API-Key": "nope"},
        {"Authorization": "Basic abc"},
    ):
        response = await client.post("/v1/sessions", json={}, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "token" not in response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert await redis_client.xlen(keys.requests) == 0
    # the key is checked before the body is read: a caller without one learns nothing of it
    malformed = await client.post(
        "/v1/sessions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 401


async def test_both_key_headers_are_accepted(client: Client) -> None:
    bearer = await client.post(
        "/v1/tokens", json={}, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    header = await client.post("/v1/tokens", json={}, headers={"X-API-Key": OTHER_API_KEY})
    assert bearer.status_code == header.status_code == 201


async def test_every_v1_route_needs_a_key(client: Client) -> None:
    dispatch = "dsp_0123456789abcdefghjkmnpqrs"
    for method, path in [
        ("GET", "/v1/agents"),
        ("GET", f"/v1/dispatches/{dispatch}"),
        ("GET", f"/v1/dispatches/{dispatch}/events"),
        ("DELETE", f"/v1/dispatches/{dispatch}"),
        ("POST", "/v1/dispatches"),
    ]:
        response = await client.request(method, path, json={} if method == "POST" else None)
        assert response.status_code == 401, (method, path)


async def test_keys_are_not_kept_in_clear(settings: TokenApiSettings) -> None:
    app = create_app(settings)
    digests = app.state["token_api"].api_keys._digests
    assert len(digests) == 2 and all(len(d) == 32 for d in digests)
    assert all(API_KEY.encode() not in d for d in digests)


async def test_rate_limit_is_shared_by_two_app_instances(
    make_settings: Callable[..., TokenApiSettings], redis_client: Redis
) -> None:
    settings = make_settings(rate_limit_per_minute=10)
    first, second = create_app(settings), create_app(settings)
    async with AsyncTestClient(app=first) as a, AsyncTestClient(app=second) as b:
        statuses = []
        for index in range(14):
            client = a if index % 2 == 0 else b
            response = await client.post("/v1/tokens", json={}, headers=AUTH)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["content-type"].startswith("application/problem+json")
                retry_after = int(response.headers["retry-after"])
                assert 1 <= retry_after <= 60
        assert statuses.count(201) == 10 and statuses.count(429) == 4, statuses
        # The budget is per key: another key is still served.
        other = await b.post("/v1/tokens", json={}, headers={"X-API-Key": OTHER_API_KEY})
        assert other.status_code == 201


async def test_rate_limit_leases_never_exceed_the_budget(
    make_settings: Callable[..., TokenApiSettings], redis_client: Redis
) -> None:
    """With leases of several requests, two instances together still stop at the limit."""
    settings = make_settings(rate_limit_per_minute=500)
    assert lease_size(500) == 5
    first, second = create_app(settings), create_app(settings)
    async with AsyncTestClient(app=first) as a, AsyncTestClient(app=second) as b:
        served = 0
        for index in range(530):
            response = await (a if index % 3 else b).post("/v1/tokens", json={}, headers=AUTH)
            served += response.status_code == 201
        assert 490 <= served <= 500, served


def test_retry_after_follows_the_sliding_window() -> None:
    # Current window full: wait for the next one.
    assert seconds_until_allowed(10, 10, 0, elapsed=15.0) == 45.0
    # Room in the current window once half of the previous one slid out.
    assert seconds_until_allowed(10, 4, 10, elapsed=0.0) == 30.0
    assert seconds_until_allowed(10, 4, 10, elapsed=40.0) == 0.0


async def test_cors_preflight_allows_configured_origin_only(
    make_settings: Callable[..., TokenApiSettings], redis_client: Redis
) -> None:
    app = create_app(make_settings(cors_allow_origins=["https://app.example.com"]))
    async with AsyncTestClient(app=app) as client:
        allowed = await client.options(
            "/v1/sessions",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
        assert allowed.status_code in (200, 204)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()

        denied = await client.options(
            "/v1/sessions",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert denied.headers.get("access-control-allow-origin") != "https://evil.example"

        actual = await client.post(
            "/v1/tokens", json={}, headers={**AUTH, "Origin": "https://app.example.com"}
        )
        assert actual.headers["access-control-allow-origin"] == "https://app.example.com"
