"""POST /v1/sessions and /v1/tokens against real Redis."""

from __future__ import annotations

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from livekit.api import TokenVerifier
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.schema import DispatchKind, DispatchRequest
from agentline.settings import TokenApiSettings
from token_api.app import create_app
from token_api.testing import AUTH, LIVEKIT_KEY, LIVEKIT_SECRET

Client = AsyncTestClient[Litestar]


async def test_session_records_dispatch_publishes_request_and_mints_token(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    response = await client.post(
        "/v1/sessions",
        json={"room": "room-a", "identity": "alice", "name": "Alice", "metadata": {"lang": "fr"}},
        headers=AUTH,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    session, dispatch = body["session"], body["dispatch"]
    assert session["room"] == "room-a" and session["identity"] == "alice"
    assert session["livekit_url"] == "ws://127.0.0.1:7880"
    assert dispatch["state"] == "requested"
    assert dispatch["status_url"] == f"/v1/dispatches/{dispatch['id']}"
    assert dispatch["events_url"] == f"/v1/dispatches/{dispatch['id']}/events"

    claims = TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(session["token"])
    assert claims.identity == "alice" and claims.name == "Alice"
    assert claims.video is not None
    assert claims.video.room == "room-a" and claims.video.room_join
    assert claims.video.can_publish and claims.video.can_subscribe
    assert not claims.video.room_admin and not claims.video.room_create
    assert msgspec.json.decode(claims.metadata) == {"lang": "fr"}

    record = await redis_client.hgetall(keys.dispatch(dispatch["id"]))
    assert record["state"] == "requested" and record["room"] == "room-a"
    assert record["agent_name"] == "travel-assistant"
    entries = await redis_client.xrange(keys.requests)
    assert len(entries) == 1
    request = msgspec.json.decode(entries[0][1]["request"], type=DispatchRequest)
    assert request.dispatch_id == dispatch["id"] and request.kind is DispatchKind.SESSION
    assert request.caller_identity == "alice"
    assert request.trace.get("traceparent", "").startswith("00-"), "trace context travels"


async def test_session_defaults_generate_room_and_identity(
    client: Client, settings: object
) -> None:
    response = await client.post("/v1/sessions", json={}, headers=AUTH)
    assert response.status_code == 201, response.text
    session = response.json()["session"]
    assert session["room"].startswith("travel-room-") and len(session["room"]) > 12
    assert session["identity"].startswith("user-")
    claims = TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(session["token"])
    assert claims.video is not None and claims.video.room == session["room"]


async def test_token_ttl_is_bounded(client: Client) -> None:
    ok = await client.post("/v1/sessions", json={"ttl_seconds": 120}, headers=AUTH)
    assert ok.status_code == 201
    claims = TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(ok.json()["session"]["token"])
    assert claims is not None
    too_long = await client.post("/v1/sessions", json={"ttl_seconds": 6 * 86400}, headers=AUTH)
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "ttl_seconds"


async def test_agent_name_must_be_allowed(client: Client, redis_client: Redis, keys: Keys) -> None:
    response = await client.post("/v1/sessions", json={"agent_name": "villain"}, headers=AUTH)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["errors"][0]["field"] == "agent_name"
    assert "travel-assistant" in problem["detail"] and "concierge" in problem["detail"]
    assert await redis_client.xlen(keys.requests) == 0, "nothing published for a refused session"

    other = await client.post("/v1/sessions", json={"agent_name": "concierge"}, headers=AUTH)
    assert other.status_code == 201


async def test_token_only_publishes_nothing(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    response = await client.post(
        "/v1/tokens", json={"room": "lobby", "identity": "bob"}, headers=AUTH
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"room", "identity", "token", "livekit_url", "expires_at"}
    claims = TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(body["token"])
    assert claims.identity == "bob" and claims.video is not None and claims.video.room == "lobby"
    assert await redis_client.xlen(keys.requests) == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"room": ""}, "room"),
        ({"room": "a" * 257}, "room"),
        ({"room": "has space"}, "room"),
        ({"room": "slash/room"}, "room"),
        ({"identity": "ünïcode"}, "identity"),
        ({"identity": "x" * 257}, "identity"),
        ({"name": "é" * 200}, "name"),
        ({"name": "bell\u0007"}, "name"),
        ({"metadata": "m" * 5000}, "metadata"),
        ({"metadata": {"blob": "m" * 5000}}, "metadata"),
        ({"ttl_seconds": 5}, "ttl_seconds"),
        ({"ttl_seconds": "long"}, "ttl_seconds"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_invalid_fields_are_422_with_field_details(
    client: Client, payload: dict[str, object], field: str
) -> None:
    response = await client.post("/v1/sessions", json=payload, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 422 and problem["type"].endswith("/invalid-fields")
    assert [e["field"] for e in problem["errors"]] == [field], problem


async def test_malformed_json_is_400(client: Client) -> None:
    response = await client.post(
        "/v1/sessions",
        content=b'{"room": "r1",',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/malformed-json")


async def test_body_not_an_object_is_422(client: Client) -> None:
    response = await client.post("/v1/sessions", json=[1, 2], headers=AUTH)
    assert response.status_code == 422, response.text


async def test_body_over_limit_is_413(client: Client) -> None:
    response = await client.post(
        "/v1/sessions",
        content=b'{"metadata": "' + b"x" * 20_000 + b'"}',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("exported", [False, True])
async def test_caller_traceparent_is_continued_into_the_stream_entry(
    exported: bool,
    settings: TokenApiSettings,
    redis_client: Redis,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without OTLP export the dispatch gets span ids of its own; with it, the ASGI
    instrumentation's server span (both continue the caller's trace)."""
    if exported:
        # A dead endpoint: spans are made by the plugin (tracing is set up once per process).
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    app = create_app(settings)
    assert any(type(p).__name__ == "OpenTelemetryPlugin" for p in app.plugins) is exported
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with AsyncTestClient(app=app) as client:
        response = await client.post(
            "/v1/sessions",
            json={},
            headers={**AUTH, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
    assert response.status_code == 201
    entries = await redis_client.xrange(keys.requests)
    request = msgspec.json.decode(entries[-1][1]["request"], type=DispatchRequest)
    version, carried_trace, span_id, flags = request.trace["traceparent"].split("-")
    assert (version, carried_trace, flags) == ("00", trace_id, "01")
    assert span_id != "00f067aa0ba902b7", "a span of its own, child of the caller's"


async def test_empty_or_non_utf8_body_is_400(client: Client) -> None:
    for body in (b"", b'{"room": "\xff"}'):
        response = await client.post(
            "/v1/sessions", content=body, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert response.status_code == 400, (body, response.text)
        assert response.json()["type"].endswith("/malformed-json")


def test_a_dispatch_without_caller_context_starts_a_sampled_trace_of_its_own() -> None:
    import re

    from token_api.sessions import dispatch_trace

    form = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")
    first, second = dispatch_trace({})["traceparent"], dispatch_trace({})["traceparent"]
    assert form.match(first) and form.match(second)
    assert first.split("-")[1] != second.split("-")[1], "a new trace id each time"
    # A caller's context with an all-zero trace id is not continued; its flags are kept.
    zero = dispatch_trace({"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-00"})["traceparent"]
    assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-00$", zero) and zero[3:35] != "0" * 32
    # An invalid header is ignored.
    assert form.match(dispatch_trace({"traceparent": "00-abc"})["traceparent"])
