"""Timing profiles: instant (default) or the real server's loopback timing.

Real timing reproduces what was measured on livekit-server 1.13.5 on loopback:

* CreateDispatch -> AvailabilityRequest ~0.2 s (``JOB_REQUEST_LATENCY_S``);
* job requests go through a request pool of ``POOL_SLOTS``; a room's default ``""``
  dispatch with no worker for it holds its slot ``UNSERVED_DEFAULT_HOLD_S`` (the server waits
  for an answer that never comes), a served one ``SERVED_HOLD_S``: a burst of 50 new rooms by
  CreateDispatch waits p50 ~2.3 s, 50 room-configuration dispatches ~0.33 s;
* after ``IDLE_REBUILD_AFTER_S`` without any job request or worker registration, the next
  requests wait ``IDLE_REBUILD_S`` (the server rebuilds its agent cache);
* ListDispatch shows a worker's first job ``FIRST_LISTING_DELAY_S`` after its assignment, the
  next ones ``LISTING_DELAY_S`` after;
* a simulated agent joins 0.35-0.42 s after its assignment and publishes 40-60 ms later.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

JOB_REQUEST_LATENCY_S = 0.2
POOL_SLOTS = 12
SERVED_HOLD_S = 0.065
UNSERVED_DEFAULT_HOLD_S = 1.0
IDLE_REBUILD_AFTER_S = 60.0
IDLE_REBUILD_S = 5.0
FIRST_LISTING_DELAY_S = 5.0
LISTING_DELAY_S = 0.2
AGENT_JOIN_DELAY_S = (0.35, 0.42)
TRACK_PUBLISH_DELAY_S = (0.04, 0.06)


class Timing:
    """Instant timing: every delay is zero and nothing waits."""

    real = False

    def listing_delay(self, first_for_worker: bool) -> float:
        return 0.0

    def agent_join_delay(self) -> float:
        return 0.0

    def track_publish_delay(self) -> float:
        return 0.0

    def note_activity(self) -> None:
        pass

    async def pace_job_request(
        self, agent_name: str, has_workers: Callable[[], bool], created_at: float
    ) -> bool:
        """Wait as the real server would before asking a worker; False when the request
        was dropped while waiting (the default dispatch with nobody serving it)."""
        return True


class RealTiming(Timing):
    real = True

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._pool = asyncio.Semaphore(POOL_SLOTS)
        self._last_activity = 0.0
        self._cache_ready_at = 0.0

    def listing_delay(self, first_for_worker: bool) -> float:
        return FIRST_LISTING_DELAY_S if first_for_worker else LISTING_DELAY_S

    def agent_join_delay(self) -> float:
        return self._rng.uniform(*AGENT_JOIN_DELAY_S)

    def track_publish_delay(self) -> float:
        return self._rng.uniform(*TRACK_PUBLISH_DELAY_S)

    def note_activity(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()

    async def pace_job_request(
        self, agent_name: str, has_workers: Callable[[], bool], created_at: float
    ) -> bool:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._last_activity and now - self._last_activity > IDLE_REBUILD_AFTER_S:
            self._cache_ready_at = max(self._cache_ready_at, now + IDLE_REBUILD_S)
        self._last_activity = now
        if self._cache_ready_at > now:
            await asyncio.sleep(self._cache_ready_at - now)
            self._last_activity = loop.time()
        async with self._pool:
            if agent_name == "" and not has_workers():
                await asyncio.sleep(UNSERVED_DEFAULT_HOLD_S)
                return False
            await asyncio.sleep(SERVED_HOLD_S)
        remaining = created_at + JOB_REQUEST_LATENCY_S - loop.time()
        if remaining > 0:
            await asyncio.sleep(remaining)
        return True


def make_timing(real: bool) -> Timing:
    return RealTiming() if real else Timing()
