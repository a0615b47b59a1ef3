"""The probe bounds its join without cancelling the SDK's connect (livekit/python-sdks#784)."""

from __future__ import annotations

import asyncio

import pytest

from agentline.probe import connect_bounded


class SlowRoom:
    """Stands in for ``rtc.Room``: a connect that takes ``seconds``, and what happened to it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.connected = self.cancelled = self.disconnected = False

    async def connect(self, url: str, token: str) -> None:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.connected = True

    async def disconnect(self) -> None:
        self.disconnected = True


async def test_a_connect_in_time_is_awaited() -> None:
    room = SlowRoom(0.01)
    await connect_bounded(room, "ws://x", "t", 1.0)
    assert room.connected and not room.disconnected


async def test_a_late_connect_is_not_cancelled_and_leaves_when_it_lands() -> None:
    room = SlowRoom(0.2)
    with pytest.raises(TimeoutError):
        await connect_bounded(room, "ws://x", "t", 0.05)
    assert not room.cancelled and not room.connected
    await asyncio.sleep(0.3)
    assert room.connected and room.disconnected and not room.cancelled
