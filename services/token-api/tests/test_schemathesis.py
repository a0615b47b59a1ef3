"""Property-based run over the OpenAPI spec (bounded): no 5xx, every answer as documented."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agentline.keys import DISPATCHER_GROUP, Keys
from token_api.app import create_app
from token_api.openapi_export import schema_json
from token_api.testing import AUTH, LIVEKIT_KEY, LIVEKIT_SECRET, serving

MAX_EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_dict(__import__("json").loads(schema_json()))


@pytest.fixture(scope="module")
def base_url(redis_url: str) -> Iterator[str]:
    """The app served by uvicorn in a thread of its own (schemathesis calls it synchronously)."""
    from agentline.settings import TokenApiSettings

    keys = Keys(namespace="test-schemathesis")
    app = create_app(
        TokenApiSettings(
            environment="test",
            redis_url=redis_url,
            redis_namespace=keys.namespace,
            api_keys=[AUTH["Authorization"].removeprefix("Bearer ")],
            livekit_api_key=LIVEKIT_KEY,
            livekit_api_secret=LIVEKIT_SECRET,
            rate_limit_per_minute=0,
            sse_heartbeat_seconds=0.2,
        )
    )
    client = redis.Redis.from_url(redis_url)
    # The dispatcher's group, as the dispatcher would create it: /readyz answers 200.
    try:
        client.xgroup_create(keys.requests, DISPATCHER_GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        assert "BUSYGROUP" in str(error)
    ready: dict[str, str] = {}
    stop = threading.Event()
    started = threading.Event()

    async def run() -> None:
        async with serving(app) as url:
            ready["url"] = url
            started.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(20), "server did not start"
    try:
        yield ready["url"]
    finally:
        stop.set()
        thread.join(15)
        stale = list(client.scan_iter(match=keys.pattern, count=1000))
        if stale:
            client.delete(*stale)
        client.close()


@schema.exclude(path_regex=r".*/events$").parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, base_url: str) -> None:
    headers = dict(AUTH)
    case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=10)


@schema.include(path_regex=r".*/events$").parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_event_stream_errors_conform(case: schemathesis.Case, base_url: str) -> None:
    """Generated dispatch ids do not exist: the stream endpoint must answer 404/400, fast."""
    case.call_and_validate(base_url=base_url, headers=dict(AUTH), checks=CHECKS, timeout=10)
