"""The dispatcher's own added latency: wall time of a step minus the time it spent awaiting
LiveKit and Redis. A step binds a :class:`StepClock` in a context variable; every awaited I/O
call is wrapped in :func:`io_time` (or :func:`io`), which adds its duration to the clock."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import TypeVar

from prometheus_client import Histogram

T = TypeVar("T")


class StepClock:
    __slots__ = ("io_seconds", "started")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.io_seconds = 0.0

    def own_seconds(self) -> float:
        return max(0.0, time.perf_counter() - self.started - self.io_seconds)


_clock: ContextVar[StepClock | None] = ContextVar("dispatcher_step_clock", default=None)


@asynccontextmanager
async def io_time() -> AsyncIterator[None]:
    clock = _clock.get()
    if clock is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        clock.io_seconds += time.perf_counter() - started


async def io(awaitable: Awaitable[T]) -> T:
    """Await a Redis (or other I/O) call, counting its time as not ours."""
    clock = _clock.get()
    if clock is None:
        return await awaitable
    started = time.perf_counter()
    try:
        return await awaitable
    finally:
        clock.io_seconds += time.perf_counter() - started


@contextmanager
def step(histogram: Histogram, name: str) -> Iterator[StepClock]:
    """Measure one step's own time into ``histogram{step=name}``."""
    clock = StepClock()
    token = _clock.set(clock)
    try:
        yield clock
    finally:
        _clock.reset(token)
        histogram.labels(name).observe(clock.own_seconds())
