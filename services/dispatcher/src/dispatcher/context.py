"""What every part of the dispatcher shares: the Redis clients, settings, stores, LiveKit
gateway and metrics (``Context``), and the span and backoff every step uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from agentline.admission import Admission
from agentline.keys import Keys
from agentline.lifecycle import DispatchState
from agentline.schema import DispatchRecord
from agentline.settings import DispatcherSettings
from agentline.store import DispatchStore
from agentline.telemetry import extract_context, tracer
from dispatcher.livekit_gateway import LiveKitGateway
from dispatcher.metrics import DispatcherMetrics
from dispatcher.registry_check import ServedNames
from dispatcher.timers import Deadlines, Leases, RoomOwners

MAX_BACKOFF_SECONDS = 5.0


class LeaseLost(Exception):
    """Another replica took the dispatch over (we were paused past our lease)."""


@dataclass(frozen=True, slots=True)
class Context:
    """What every part of the dispatcher shares."""

    redis: Redis  # the pool: blocking reads and the rest
    hot_redis: Redis  # the per-dispatch commands, pipelined (agentline.redis_mux); never blocking
    keys: Keys
    settings: DispatcherSettings
    store: DispatchStore
    gateway: LiveKitGateway
    served: ServedNames
    metrics: DispatcherMetrics
    deadlines: Deadlines
    leases: Leases
    rooms: RoomOwners
    admission: Admission | None = None  # None: capacity-aware admission is off

    @property
    def lease_ms(self) -> int:
        # Renewed before every LiveKit call: one call (with margin) fits in it.
        return int((self.settings.livekit_timeout_seconds * 2 + 2) * 1000)

    @property
    def poll_ms(self) -> int:
        return int(self.settings.poll_interval_seconds * 1000)

    def stage_timeout_ms(self, state: DispatchState) -> int | None:
        s = self.settings
        seconds = {
            DispatchState.DISPATCHED: s.assign_timeout_seconds,
            DispatchState.ASSIGNED: s.join_timeout_seconds,
            DispatchState.JOINED: s.audio_timeout_seconds,
        }.get(state)
        return None if seconds is None else int(seconds * 1000)


def dispatch_span(record: DispatchRecord, name: str) -> Any:
    """A span of this dispatch's trace (the API's context travels in the record)."""
    return tracer("dispatcher").start_as_current_span(
        name,
        context=extract_context(record.trace),
        attributes={"dispatch.id": record.id, "room": record.room, "agent_name": record.agent_name},
    )


def backoff_seconds(base: float, retry: int) -> float:
    return min(MAX_BACKOFF_SECONDS, base * (2**retry))
