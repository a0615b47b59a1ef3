"""Which Realtime endpoint the jobs use: OpenAI when a key is set, else the local stand-in."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass

from agent_worker.realtime_standin import DEFAULT_STANDIN_KEY, StandinConfig, running_standin
from agentline.settings import AgentWorkerSettings

log = logging.getLogger("agent_worker.model_endpoint")


@dataclass(frozen=True)
class ModelEndpoint:
    api_key: str
    base_url: str | None
    using_standin: bool

    def describe(self) -> str:
        if not self.using_standin:
            return f"OpenAI Realtime API at {self.base_url or 'https://api.openai.com/v1'}"
        return f"local Realtime stand-in at {self.base_url} (no OPENAI_API_KEY set)"


async def resolve_model_endpoint(
    settings: AgentWorkerSettings, stack: AsyncExitStack
) -> ModelEndpoint:
    """With ``OPENAI_API_KEY``: the real API (or ``OPENAI_BASE_URL``). Without: a stand-in at
    ``OPENAI_BASE_URL`` if given, else one started here, in this process, on a free port."""
    if settings.openai_api_key is not None:
        return ModelEndpoint(
            settings.openai_api_key.get_secret_value(), settings.openai_base_url, False
        )
    if settings.is_production:
        raise SystemExit("agent-worker: OPENAI_API_KEY must be set in production")
    if settings.openai_base_url:
        return ModelEndpoint(DEFAULT_STANDIN_KEY, settings.openai_base_url, True)
    standin = await stack.enter_async_context(
        running_standin(StandinConfig(pace=1.0, first_audio_delay_ms=250))
    )
    return ModelEndpoint(DEFAULT_STANDIN_KEY, standin.url, True)
