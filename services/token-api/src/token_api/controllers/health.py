"""Health, readiness and metrics: unauthenticated, for probes and scrapers."""

from __future__ import annotations

import asyncio

from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import REGISTRY
from redis.exceptions import RedisError

from agentline.keys import DISPATCHER_GROUP
from agentline.metrics import METRICS_CONTENT_TYPE, render_metrics
from token_api.problems import PROBLEM_BASE, PROBLEM_JSON
from token_api.schemas import Health, NotReady, Readiness
from token_api.state import AppState

READY_TIMEOUT_SECONDS = 1.0


async def _dispatcher_group_present(state: AppState) -> bool:
    try:
        groups = await state.redis.xinfo_groups(state.keys.requests)
    except RedisError as error:
        if "no such key" in str(error).lower():
            return False
        raise
    return any(group.get("name") == DISPATCHER_GROUP for group in groups)


class HealthController(Controller):
    path = "/"
    tags = ["health"]
    include_in_schema = True

    @get("/healthz", summary="The process is alive (no dependencies checked)")
    async def healthz(self) -> Health:
        return Health("ok")

    @get(
        "/readyz",
        summary="Ready: Redis answers and the dispatcher group exists on the stream",
        responses={
            503: ResponseSpec(
                NotReady, description="Not ready (checks say which)", media_type=PROBLEM_JSON
            )
        },
    )
    async def readyz(self, app_state: NamedDependency[AppState]) -> Response[Readiness | NotReady]:
        checks = {"redis": False, "dispatcher_group": False}
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                checks["redis"] = bool(await app_state.redis.ping())
                checks["dispatcher_group"] = await _dispatcher_group_present(app_state)
        except (RedisError, TimeoutError, OSError):
            pass
        if all(checks.values()):
            return Response(Readiness(True, checks), media_type=MediaType.JSON)
        missing = ", ".join(name for name, ok in checks.items() if not ok)
        problem = NotReady(
            type=PROBLEM_BASE + "not-ready",
            title="Not ready",
            status=503,
            detail=f"Failed checks: {missing}.",
            ready=False,
            checks=checks,
        )
        return Response(
            problem, status_code=503, media_type=PROBLEM_JSON, headers={"Retry-After": "2"}
        )

    @get("/metrics", summary="Prometheus metrics", media_type=METRICS_CONTENT_TYPE)
    async def metrics(self) -> Response[bytes]:
        return Response(await render_metrics(REGISTRY), media_type=METRICS_CONTENT_TYPE)
