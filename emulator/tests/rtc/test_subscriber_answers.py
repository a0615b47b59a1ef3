"""The subscriber connection's offers: a client that answers late still gets its tracks, and an
answer to an older offer is told apart by its id. Only SDP is exchanged (no media, no ICE),
so no network namespace is needed."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from livekit_emulator.rtc import peer
from livekit_emulator.rtc.peer import SubscriberPeer


class _Client:
    """Receives the emulator's offers and answers them when told to."""

    def __init__(self) -> None:
        self.offers: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self.pc = RTCPeerConnection()

    async def on_offer(self, sdp: str, offer_id: int, mid_to_track: dict[str, str]) -> None:
        self.offers.put_nowait((sdp, offer_id))

    async def answer(self, sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)


async def test_a_late_answer_still_completes_the_offer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer, "ANSWER_SLOW_S", 0.05)
    client = _Client()
    subscriber = SubscriberPeer(client.on_offer, label="late-client")
    subscriber.start()
    try:
        sdp, offer_id = await asyncio.wait_for(client.offers.get(), 10)
        await asyncio.sleep(0.2)  # past the slow mark: before, the offer was dropped here
        subscriber.set_answer(await client.answer(sdp), offer_id)
        await asyncio.wait_for(subscriber.wait_negotiations(1), 5)
        assert subscriber.pc.remoteDescription is not None
    finally:
        await subscriber.close()
        await client.pc.close()


async def test_an_answer_to_another_offer_is_ignored() -> None:
    client = _Client()
    subscriber = SubscriberPeer(client.on_offer, label="stale-client")
    subscriber.start()
    try:
        sdp, offer_id = await asyncio.wait_for(client.offers.get(), 10)
        answer = await client.answer(sdp)
        subscriber.set_answer(answer, offer_id + 7)  # not the outstanding offer
        await asyncio.sleep(0.1)
        assert subscriber.negotiations == 0
        subscriber.set_answer(answer, offer_id)
        await asyncio.wait_for(subscriber.wait_negotiations(1), 5)
    finally:
        await subscriber.close()
        await client.pc.close()
