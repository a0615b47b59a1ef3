"""LeanPrometheusMiddleware counts what Litestar's PrometheusMiddleware counts: the same
series move by the same amounts for the same requests, excluded paths stay out."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from litestar.plugins.prometheus import PrometheusMiddleware
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from agentline.settings import TokenApiSettings
from token_api.app import create_app
from token_api.testing import AUTH

# Durations differ from run to run: only counts, totals and gauges are compared.
_COMPARED = ("_total{", "_count{", "_in_progress{")


def _series(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("token_api_request") and any(part in line for part in _COMPARED)
    }


async def _deltas(settings: TokenApiSettings) -> dict[str, float]:
    async with AsyncTestClient(app=create_app(settings)) as client:
        before = _series((await client.get("/metrics")).text)
        assert (await client.post("/v1/sessions", json={}, headers=AUTH)).status_code == 201
        bad = await client.post("/v1/sessions", json={"agent_name": "bogus"}, headers=AUTH)
        assert bad.status_code == 422
        assert (await client.post("/v1/tokens", json={}, headers=AUTH)).status_code == 201
        assert (await client.post("/v1/tokens", json={})).status_code == 401
        assert (await client.get("/v1/dispatches/dsp_none", headers=AUTH)).status_code == 404
        assert (await client.get("/v1/dispatches/dsp_other", headers=AUTH)).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/schema/openapi.json")).status_code == 200
        after = _series((await client.get("/metrics")).text)
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


async def test_same_series_as_litestars_middleware(
    make_settings: Callable[..., TokenApiSettings],
    redis_client: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lean = await _deltas(make_settings())
    monkeypatch.setattr("token_api.app.LeanPrometheusMiddleware", PrometheusMiddleware)
    stock = await _deltas(make_settings())
    assert lean == stock
    assert any('path="/v1/sessions"' in k and 'status_code="201"' in k for k in lean)
    assert (
        lean[
            'token_api_requests_total{app_name="token_api",method="GET",path="/v1/dispatches/{dispatch_id}",status_code="404"}'
        ]
        == 2
    )
    assert not any("/healthz" in k or "/schema" in k for k in lean)


_EXPOSITION_SCRIPT = """
import asyncio, re, sys
from litestar.plugins.prometheus import PrometheusMiddleware
from litestar.testing import AsyncTestClient
import token_api.app
from token_api.testing import AUTH

if sys.argv[1] == "stock":
    token_api.app.LeanPrometheusMiddleware = PrometheusMiddleware

async def main():
    async with AsyncTestClient(app=token_api.app.create_app()) as client:
        for body in ({}, {"agent_name": "bogus"}, {"room": ""}):
            await client.post("/v1/sessions", json=body, headers=AUTH)
        await client.post("/v1/tokens", json={}, headers=AUTH)
        await client.get("/v1/dispatches/dsp_none", headers=AUTH)
        await client.get("/healthz")
        text = (await client.get("/metrics")).text
    lines = [line for line in text.splitlines() if "token_api_request" in line]
    # timings differ from run to run: bucket counts, sums and creation times are masked
    masked = [re.sub(r"(_bucket\\{.*|_sum\\{.*|_created\\{.*) [0-9.e+-]+$", r"\\1 X", x) for x in lines]
    print("\\n".join(masked))

asyncio.run(main())
"""


def test_request_series_exposed_as_litestars_own(
    make_settings: Callable[..., TokenApiSettings], redis_client: Redis
) -> None:
    """Each in a fresh process (the metrics are process-wide): Litestar's middleware with its
    prometheus_client metrics, then ours with loop series: the same /metrics lines."""
    import os
    import subprocess
    import sys

    settings = make_settings()
    env = {
        **os.environ,
        "AGENTLINE_ENV": "test",
        "REDIS_URL": settings.redis_url,
        "AGENTLINE_REDIS_NAMESPACE": settings.redis_namespace,
        "TOKEN_API_API_KEYS": ",".join(k.get_secret_value() for k in settings.api_keys),
        "TOKEN_API_RATE_LIMIT_PER_MINUTE": "0",
        "LIVEKIT_API_KEY": settings.livekit_api_key,
        "LIVEKIT_API_SECRET": settings.livekit_api_secret.get_secret_value(),
    }

    def exposition(which: str) -> str:
        run = subprocess.run(
            [sys.executable, "-c", _EXPOSITION_SCRIPT, which],
            env=env,
            capture_output=True,
            text=True,
            timeout=25,
            check=True,
        )
        return run.stdout

    stock, lean = exposition("stock"), exposition("lean")
    assert (
        "token_api_requests_total{" in lean and "token_api_request_duration_seconds_bucket{" in lean
    )
    assert "token_api_requests_in_progress{" in lean
    assert lean == stock
