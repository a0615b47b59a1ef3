"""GET /v1/diagnostics: `agentline doctor`'s checks, read-only and without the live probe."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.di import NamedDependency

from agentline.doctor import DoctorOptions, run_doctor
from agentline.doctor.runner import report
from token_api.auth import ApiKeyMiddleware
from token_api.controllers.common import AUTHED, problem_responses
from token_api.state import AppState


class DiagnosticsController(Controller):
    path = "/v1/diagnostics"
    tags = ["diagnostics"]
    middleware = [ApiKeyMiddleware]
    security = [{"BearerAuth": []}, {"ApiKeyHeader": []}]

    @get(
        "/",
        summary="Why an agent would not join: settings, Redis, LiveKit, workers, webhooks",
        description=(
            "The checks of `agentline doctor` (no live probe), each with its evidence and the "
            "fix. `ok` is true only when every check passed."
        ),
        responses=problem_responses(*AUTHED),
    )
    async def diagnostics(self, app_state: NamedDependency[AppState]) -> dict[str, Any]:
        settings = app_state.settings
        names = list(dict.fromkeys([settings.default_agent_name, *settings.allowed_agent_names]))
        checks = await run_doctor(
            settings, DoctorOptions(agent_names=names, probe=False), redis=app_state.redis
        )
        return report(checks)
