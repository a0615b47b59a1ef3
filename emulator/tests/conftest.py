"""Helpers shared by the emulator's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from livekit import api

from livekit_emulator.testing import RunningEmulator


@pytest.fixture
async def lkapi(livekit_emulator: RunningEmulator) -> AsyncIterator[api.LiveKitAPI]:
    client = api.LiveKitAPI(
        livekit_emulator.http_url, livekit_emulator.api_key, livekit_emulator.api_secret
    )
    yield client
    await client.aclose()
