"""GET /v1/agents: which agent names have live workers, with capacity, load and the
capacity-aware admission figures (slots used, dispatches waiting)."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency

from agentline.admission import Admission, AdmissionStatus
from token_api.auth import ApiKeyMiddleware
from token_api.controllers.common import AUTHED, problem_responses
from token_api.schemas import AgentInfo, AgentList
from token_api.state import AppState

_EMPTY = AdmissionStatus(0, 0, 0)


class AgentController(Controller):
    path = "/v1/agents"
    tags = ["agents"]
    middleware = [ApiKeyMiddleware]
    security = [{"BearerAuth": []}, {"ApiKeyHeader": []}]

    @get(
        "/",
        summary="Agent names, their live workers, capacity and load",
        description=(
            "From the worker registry (heartbeats). Allowed names without live workers are "
            "listed with zero workers: a session for them would fail with no_worker_for_agent. "
            "`used` counts the slots reserved by dispatches or held by running jobs, `waiting` "
            "the dispatches queued for a slot (capacity-aware admission)."
        ),
        responses=problem_responses(*AUTHED),
    )
    async def list_agents(self, app_state: NamedDependency[AppState]) -> AgentList:
        settings = app_state.settings
        summary = await app_state.registry.summary()
        allowed = set(settings.allowed_agent_names)
        agents = [
            AgentInfo(
                agent_name=name,
                allowed=name in allowed,
                workers=s.workers,
                capacity=s.capacity,
                active_jobs=s.active_jobs,
                load=round(s.load, 4),
                draining_workers=s.draining_workers,
            )
            for name, s in summary.items()
        ]
        agents.extend(
            AgentInfo(name, True, 0, 0, 0, 1.0, 0) for name in sorted(allowed - summary.keys())
        )
        admission = Admission(app_state.redis, app_state.keys)
        known = {a.agent_name for a in agents}
        for name in await admission.queued_agent_names():  # a queue without live workers
            if name not in known and await admission.status(name) != _EMPTY:
                agents.append(AgentInfo(name, False, 0, 0, 0, 1.0, 0))
        statuses = await asyncio.gather(*(admission.status(a.agent_name) for a in agents))
        agents = [
            msgspec.structs.replace(a, used=s.used, waiting=s.waiting)
            for a, s in zip(agents, statuses, strict=True)
        ]
        agents.sort(key=lambda a: a.agent_name)
        return AgentList(default_agent_name=settings.default_agent_name, agents=agents)
