"""pytest plugin (entry point ``pytest11``): the ``livekit_emulator`` fixture and the
``livekit_emulator_factory`` fixture.

::

    async def test_x(livekit_emulator):
        api = LiveKitAPI(livekit_emulator.http_url, livekit_emulator.api_key,
                         livekit_emulator.api_secret)

    async def test_y(livekit_emulator_factory):
        async with livekit_emulator_factory(simulated_workers=[("agent", 2)]) as emu:
            ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from .config import DEFAULT_API_KEY, DEFAULT_API_SECRET
from .testing import RunningEmulator, running_emulator

_async_fixture: Any
try:  # the fixtures are async: pytest-asyncio runs them (plain pytest.fixture in auto mode)
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover
    _async_fixture = pytest.fixture


@_async_fixture
async def livekit_emulator() -> AsyncIterator[RunningEmulator]:
    """An emulator on a free port: keys ``{DEFAULT_API_KEY: DEFAULT_API_SECRET}``, no
    webhooks, no simulated workers."""
    async with running_emulator(keys={DEFAULT_API_KEY: DEFAULT_API_SECRET}) as emu:
        yield emu


@_async_fixture
async def livekit_emulator_factory() -> AsyncIterator[
    Callable[..., AbstractAsyncContextManager[RunningEmulator]]
]:
    """``running_emulator`` itself: ``async with livekit_emulator_factory(**kwargs) as emu``."""

    def factory(**kwargs: Any) -> AbstractAsyncContextManager[RunningEmulator]:
        return running_emulator(**kwargs)

    yield factory
