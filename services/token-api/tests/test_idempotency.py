"""Idempotency-Key on POSTs: same key and body → first answer; other body → 409."""

from __future__ import annotations

import asyncio

from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from agentline.keys import Keys
from token_api.testing import AUTH, OTHER_API_KEY

Client = AsyncTestClient[Litestar]


async def test_same_key_and_body_returns_the_first_answer(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    headers = {**AUTH, "Idempotency-Key": "order-1"}
    first = await client.post("/v1/sessions", json={"room": "r-idem"}, headers=headers)
    second = await client.post("/v1/sessions", json={"room": "r-idem"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert await redis_client.xlen(keys.requests) == 1, "one dispatch only"


async def test_same_key_other_body_is_409(client: Client) -> None:
    headers = {**AUTH, "Idempotency-Key": "order-2"}
    assert (
        await client.post("/v1/sessions", json={"room": "a"}, headers=headers)
    ).status_code == 201
    conflict = await client.post("/v1/sessions", json={"room": "b"}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith("application/problem+json")
    assert conflict.json()["type"].endswith("/idempotency-key-reused")


async def test_keys_are_scoped_per_api_key(client: Client, redis_client: Redis, keys: Keys) -> None:
    body = {"room": "shared-room"}
    one = await client.post("/v1/sessions", json=body, headers={**AUTH, "Idempotency-Key": "k"})
    two = await client.post(
        "/v1/sessions", json=body, headers={"X-API-Key": OTHER_API_KEY, "Idempotency-Key": "k"}
    )
    assert one.status_code == two.status_code == 201
    assert one.json()["dispatch"]["id"] != two.json()["dispatch"]["id"]
    assert await redis_client.xlen(keys.requests) == 2


async def test_concurrent_duplicates_make_one_dispatch(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    headers = {**AUTH, "Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *[client.post("/v1/sessions", json={"room": "burst"}, headers=headers) for _ in range(8)]
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["dispatch"]["id"] for r in responses}) == 1
    assert await redis_client.xlen(keys.requests) == 1


async def test_unanswered_reservation_is_answered_from_the_record(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    """A first attempt that recorded its dispatch but died before answering: the retry gets
    that dispatch (and a token for its room), not a second one."""
    headers = {**AUTH, "Idempotency-Key": "crash"}
    first = await client.post("/v1/sessions", json={"room": "crash-room"}, headers=headers)
    answer_keys = [k async for k in redis_client.scan_iter(match="*:idem:session:*crash")]
    assert len(answer_keys) == 1
    await redis_client.hset(answer_keys[0], "status", "0")  # as if never answered
    await redis_client.hdel(answer_keys[0], "body")
    retry = await client.post("/v1/sessions", json={"room": "crash-room"}, headers=headers)
    assert retry.status_code == 201
    assert retry.json()["dispatch"]["id"] == first.json()["dispatch"]["id"]
    assert retry.json()["session"]["room"] == "crash-room"
    assert await redis_client.xlen(keys.requests) == 1


async def test_token_and_reinvite_are_idempotent_too(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    token_headers = {**AUTH, "Idempotency-Key": "tok"}
    t1 = await client.post("/v1/tokens", json={"room": "x"}, headers=token_headers)
    t2 = await client.post("/v1/tokens", json={"room": "x"}, headers=token_headers)
    assert t1.json() == t2.json()

    headers = {**AUTH, "Idempotency-Key": "again"}
    d1 = await client.post("/v1/dispatches", json={"room": "x"}, headers=headers)
    d2 = await client.post("/v1/dispatches", json={"room": "x"}, headers=headers)
    assert d1.status_code == d2.status_code == 202
    assert d1.json() == d2.json()
    assert await redis_client.xlen(keys.requests) == 1


async def test_bad_idempotency_key_is_400(client: Client) -> None:
    response = await client.post(
        "/v1/sessions", json={}, headers={**AUTH, "Idempotency-Key": "has space"}
    )
    assert response.status_code == 400
    assert response.json()["type"].endswith("/bad-idempotency-key")


async def test_same_key_on_two_endpoints_does_not_mix(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    headers = {**AUTH, "Idempotency-Key": "same"}
    session = await client.post("/v1/sessions", json={"room": "y"}, headers=headers)
    reinvite = await client.post("/v1/dispatches", json={"room": "y"}, headers=headers)
    assert session.status_code == 201 and reinvite.status_code == 202
    assert session.json()["dispatch"]["id"] != reinvite.json()["id"]
    assert await redis_client.xlen(keys.requests) == 2
