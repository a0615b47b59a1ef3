"""The Litestar application factory."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.plugins.prometheus import PrometheusConfig
from redis.asyncio import Redis

from agentline.heap import freeze_startup_objects
from agentline.keys import Keys
from agentline.redis_mux import MuxRedis
from agentline.registry import WorkerRegistry
from agentline.settings import TokenApiSettings, load_settings
from agentline.store import DispatchStore
from agentline.telemetry import setup_tracing
from token_api import __version__
from token_api.apikeys import ApiKeys
from token_api.controllers.agents import AgentController
from token_api.controllers.common import provide_app_state, provide_redis, provide_settings
from token_api.controllers.diagnostics import DiagnosticsController
from token_api.controllers.dispatches import DispatchController
from token_api.controllers.health import HealthController
from token_api.controllers.sessions import SessionController
from token_api.idempotency import IdempotencyStore
from token_api.observability import LeanPrometheusMiddleware
from token_api.problems import EXCEPTION_HANDLERS
from token_api.ratelimit import RateLimiter
from token_api.redis_client import redis_client
from token_api.schemas import SAFE_NAME_PATTERN
from token_api.state import STATE_KEY, AppState
from token_api.tokens import TokenMinter

# Probes and scrapes are neither traced nor counted: they would drown the API's own figures.
UNMEASURED_PATHS = ["/healthz", "/readyz", "/metrics", "/schema"]
REDIS_SOCKET_TIMEOUT_SECONDS = 2.0
# The collector's first generation runs after this many net new container objects (Python's
# default: 700). Requests in flight keep a few hundred objects alive, so at the default it ran
# every few requests and walked them again each time: ~5 % of the session path's instructions.
# Cyclic garbage is still collected, only less often; a young collection of 20,000 objects
# takes ~0.5 ms here.
GC_YOUNG_THRESHOLD = 20_000


def build_state(settings: TokenApiSettings) -> AppState:
    import re

    if not re.match(SAFE_NAME_PATTERN, settings.room_prefix + "x"):
        raise ValueError("TOKEN_API_ROOM_PREFIX may hold only letters, digits and _ . : @ + = ~ -")
    keys = Keys(settings.redis_namespace)
    redis = redis_client(settings.redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS)
    stream_redis = redis_client(
        settings.redis_url, socket_timeout=settings.sse_heartbeat_seconds + 5.0
    )
    store = DispatchStore(redis, keys)
    # The request path's scripts (the session's write, the rate limit's leases) go over the
    # pipelined connection where the URL allows it. Duck-typed: both only register and call
    # Lua scripts.
    hot_redis = redis
    if settings.redis_url.startswith("redis://"):
        hot_redis = cast(Redis, MuxRedis(settings.redis_url, timeout=REDIS_SOCKET_TIMEOUT_SECONDS))
    session_store = DispatchStore(hot_redis, keys) if hot_redis is not redis else store
    return AppState(
        settings=settings,
        keys=keys,
        redis=redis,
        stream_redis=stream_redis,
        store=store,
        session_store=session_store,
        stream_store=DispatchStore(stream_redis, keys),
        registry=WorkerRegistry(redis, keys),
        api_keys=ApiKeys(k.get_secret_value() for k in settings.api_keys),
        rate_limiter=RateLimiter(hot_redis, keys, settings.rate_limit_per_minute),
        idempotency=IdempotencyStore(redis, keys),
        minter=TokenMinter(
            settings.livekit_api_key, settings.livekit_api_secret.get_secret_value()
        ),
        livekit_url=settings.public_livekit_url or settings.livekit_ws_url,
    )


def tracing_exported() -> bool:
    """True when an OTLP endpoint is configured (the condition agentline.telemetry exports on)."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="agentline token-api",
        version=__version__,
        description=(
            "Sessions, LiveKit participant tokens, agent dispatch status and live events. "
            "Errors are RFC 9457 problem details (application/problem+json)."
        ),
        path="/schema",
        render_plugins=[SwaggerRenderPlugin()],
        components=Components(
            security_schemes={
                "BearerAuth": SecurityScheme(type="http", scheme="bearer"),
                "ApiKeyHeader": SecurityScheme(
                    type="apiKey", name="X-API-Key", security_scheme_in="header"
                ),
            }
        ),
    )


def lifespan_of(state: AppState) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Startup: the collector tuned for the request path; shutdown: the state's clients closed."""

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        freeze_startup_objects()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        try:
            yield
        finally:
            await state.close()

    return lifespan


def prometheus_config() -> PrometheusConfig:
    """Request metrics: Litestar's plugin, paths grouped by route, unhandled ones left out."""
    return PrometheusConfig(
        app_name="token_api",
        prefix="token_api",
        group_path=True,
        exclude_unhandled_paths=True,
        exclude=UNMEASURED_PATHS,
        middleware_class=LeanPrometheusMiddleware,
    )


def create_app(settings: TokenApiSettings | None = None, **overrides: Any) -> Litestar:
    """The app; settings from the environment unless given (``overrides`` patch them)."""
    settings = settings or load_settings(TokenApiSettings, **overrides)
    state = build_state(settings)
    provider = setup_tracing("token-api")
    plugins = []
    if tracing_exported():
        # Server spans for every request, exported over OTLP. The ASGI instrumentation costs
        # ~150 µs a request, so it is only installed when its spans go somewhere; without it
        # the dispatch path still opens its own span (see sessions.dispatch_span) so that the
        # trace context travels in the stream entry.
        tracing = OpenTelemetryConfig(
            tracer_provider=provider,
            exclude=UNMEASURED_PATHS,
            # One server span per request; per-message send/receive spans tell little more.
            exclude_spans=["receive", "send"],
        )
        plugins.append(OpenTelemetryPlugin(tracing))
    prometheus = prometheus_config()
    return Litestar(
        route_handlers=[
            SessionController,
            DispatchController,
            AgentController,
            DiagnosticsController,
            HealthController,
        ],
        dependencies={
            "app_state": Provide(provide_app_state, sync_to_thread=False),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "redis": Provide(provide_redis, sync_to_thread=False),
        },
        state=initial_state(state),
        lifespan=[lifespan_of(state)],
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=CORSConfig(
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "Idempotency-Key",
                "Last-Event-ID",
            ],
            expose_headers=["Retry-After", "Idempotent-Replayed"],
            max_age=600,
        )
        if settings.cors_allow_origins
        else None,
        middleware=[prometheus.middleware],
        plugins=plugins,
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
    )


def initial_state(state: AppState) -> Any:
    """The Litestar state that holds the app's :class:`AppState`."""
    from litestar.datastructures import State

    return State({STATE_KEY: state})
