"""Stand-in configuration and the counters tests read."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The key `make dev` hands the worker when no OPENAI_API_KEY is set.
DEFAULT_STANDIN_KEY = "sk-agentline-standin"


@dataclass(frozen=True)
class StandinConfig:
    """How the stand-in behaves.

    ``api_keys``: the keys it accepts (any other key gets the real API's ``invalid_api_key``
    error); ``None`` accepts every non-empty key. ``pace``: 1.0 streams audio in real time,
    0 as fast as the socket takes it (what tests want). ``first_audio_delay_ms``: the model's
    thinking time before the first delta. ``delta_ms``: audio per ``output_audio.delta``.
    """

    api_keys: frozenset[str] | None = frozenset({DEFAULT_STANDIN_KEY})
    pace: float = 0.0
    first_audio_delay_ms: int = 0
    delta_ms: int = 100
    model_prefixes: tuple[str, ...] = ("gpt-realtime", "gpt-4o-realtime", "gpt-4o-mini-realtime")

    def accepts_key(self, key: str) -> bool:
        if not key:
            return False
        return self.api_keys is None or key in self.api_keys

    def accepts_model(self, model: str) -> bool:
        return model.startswith(self.model_prefixes)


@dataclass
class StandinStats:
    """What the stand-in has seen, for assertions."""

    connections: int = 0
    rejected_keys: int = 0
    responses_completed: int = 0
    responses_cancelled: int = 0
    audio_bytes_in: int = 0
    audio_bytes_out: int = 0
    client_events: Counter[str] = field(default_factory=Counter)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
