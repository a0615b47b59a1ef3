"""A local stand-in for the OpenAI Realtime API, for tests and `make dev` without a key.

It speaks the GA event protocol as far as livekit-plugins-openai uses it, so the real plugin
runs against it unmodified (``base_url`` pointing here).
"""

from agent_worker.realtime_standin.config import DEFAULT_STANDIN_KEY, StandinConfig, StandinStats
from agent_worker.realtime_standin.server import (
    RunningStandin,
    create_app,
    main,
    running_standin,
)

__all__ = [
    "DEFAULT_STANDIN_KEY",
    "RunningStandin",
    "StandinConfig",
    "StandinStats",
    "create_app",
    "main",
    "running_standin",
]
