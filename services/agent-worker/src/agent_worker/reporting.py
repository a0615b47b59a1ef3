"""Reporting to Redis: worker events (per job) and registry heartbeats (per worker).

Nothing on the job-request path waits for Redis: events go into a bounded queue that a
background task drains, retrying while Redis is away. When the queue is full the oldest
events are dropped (and counted): a slow Redis must never slow down accepting jobs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from agentline.keys import Keys
from agentline.registry import WorkerRegistry
from agentline.schema import WorkerEvent, WorkerInfo
from agentline.worker_events import WorkerEventPublisher

log = logging.getLogger("agent_worker.reporting")


class EventSink(Protocol):
    def publish(self, event: WorkerEvent) -> None:
        """Queue ``event``; never blocks."""


class RedisEventSink:
    """Writes queued events in batches: what is queued when a write starts goes in one
    pipelined round trip, and what comes meanwhile goes in the next. A lone event is written at
    once (it moves a dispatch: no waiting window), and a burst of job requests still costs the
    event loop a few Redis calls rather than one per event."""

    def __init__(
        self, redis: Redis, keys: Keys, max_queued: int = 10_000, batch: int = 200
    ) -> None:
        self._publisher = WorkerEventPublisher(redis, keys)
        self._batch = batch
        self._queue: collections.deque[WorkerEvent] = collections.deque(maxlen=max_queued)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.published = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="worker-events")

    def publish(self, event: WorkerEvent) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        self._wakeup.set()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            await self._wakeup.wait()
            # one turn of the event loop: events of the same turn (job requests answered
            # together) join this batch; later ones queue behind the write in flight
            await asyncio.sleep(0)
            self._wakeup.clear()
            while self._queue:
                events = list(itertools.islice(self._queue, self._batch))
                try:
                    await self._write(events)
                except (RedisError, OSError) as exc:
                    log.warning("worker events not written yet (%s); retrying", exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                self.published += len(events)
                # events dropped from the left while writing are not in front any more
                for event in events:
                    if self._queue and self._queue[0] is event:
                        self._queue.popleft()

    async def _write(self, events: list[WorkerEvent]) -> None:
        await self._publisher.publish_many(events)

    async def flush(self, within_s: float) -> bool:
        """Wait until everything queued is written (at shutdown)."""
        async with asyncio.timeout(within_s):
            while self._queue:
                self._wakeup.set()
                await asyncio.sleep(0.02)
        return True

    async def aclose(self, within_s: float = 2.0) -> None:
        with contextlib.suppress(TimeoutError):
            await self.flush(within_s)
        if self._queue:
            log.warning("%d worker events not written at shutdown", len(self._queue))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Heartbeat:
    """Refreshes this worker's registry entry every ``period`` seconds while it should."""

    def __init__(
        self,
        registry: WorkerRegistry,
        info: Callable[[], WorkerInfo | None],
        period: float,
    ) -> None:
        self._registry = registry
        self._info = info
        self._period = period
        self._task: asyncio.Task[None] | None = None
        self._last: WorkerInfo | None = None
        self.beats = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="registry-heartbeat")

    async def beat(self) -> None:
        info = self._info()
        if info is None:  # not registered with LiveKit: not a worker anyone can use
            if self._last is not None:
                await self._registry.deregister(self._last.worker_id)
                self._last = None
            return
        await self._registry.heartbeat(info)
        self._last = info
        self.beats += 1

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except (RedisError, OSError) as exc:
                log.warning("registry heartbeat failed: %s", exc)
            await asyncio.sleep(self._period)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._last is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._registry.deregister(self._last.worker_id)
