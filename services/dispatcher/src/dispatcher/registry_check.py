"""Which agent names live workers serve, read from the worker registry with a short cache.

A positive answer is cached for ``ttl`` (heartbeats refresh every ~2 s, so a second of cache
costs nothing in accuracy); a negative answer is always re-read before anyone fails on it.
While dispatches keep coming, the cache is re-read in the background once it is half its
``ttl`` old, so that no dispatch waits for that read on its way to LiveKit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from agentline.registry import WorkerRegistry
from agentline.settings import RegistryPolicy
from dispatcher.overhead import io


class ServedNames:
    def __init__(self, registry: WorkerRegistry, ttl: float = 1.0) -> None:
        self.registry = registry
        self.ttl = ttl
        self._names: frozenset[str] = frozenset()
        self._read_at = -1e9
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    async def refresh(self) -> frozenset[str]:
        async with self._lock:
            if time.monotonic() - self._read_at < 0.05:  # a racing refresh just read it
                return self._names
            self._names = frozenset(await io(self.registry.served_agent_names()))
            self._read_at = time.monotonic()
            return self._names

    async def serves(self, agent_name: str) -> bool:
        if self.known_to_serve(agent_name):
            half_stale = time.monotonic() - self._read_at > self.ttl / 2
            if half_stale and (self._background is None or self._background.done()):
                self._background = asyncio.create_task(self._refresh_quietly())
            return True
        return agent_name in await self.refresh()

    def known_to_serve(self, agent_name: str) -> bool:
        """What ``serves`` answers at once from its cache (no read)."""
        return agent_name in self._names and time.monotonic() - self._read_at < self.ttl

    async def _refresh_quietly(self) -> None:
        # Redis down: the next dispatch past the ttl reads it itself and meets the error.
        with contextlib.suppress(RedisError, OSError):
            await self.refresh()

    async def names(self) -> list[str]:
        return sorted(await self.refresh())


def passes_at_once(served: ServedNames, agent_name: str, policy: RegistryPolicy) -> bool:
    """Whether ``wait_for_worker`` will answer True without a read."""
    return policy is RegistryPolicy.ADVISE or served.known_to_serve(agent_name)


async def wait_for_worker(
    served: ServedNames,
    agent_name: str,
    policy: RegistryPolicy,
    wait_seconds: float,
    keepalive: Callable[[], Awaitable[bool]] | None = None,
) -> bool:
    """True when a live worker serves ``agent_name`` (always True under ``advise``).
    ``keepalive`` runs while waiting (it renews the dispatch's lease)."""
    if policy is RegistryPolicy.ADVISE:
        return True
    if await served.serves(agent_name):
        return True
    if policy is RegistryPolicy.FAIL:
        return False
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        if agent_name in await served.refresh():
            return True
        if keepalive is not None and not await keepalive():
            return False
    return False
