"""The two peer connections of a signalling session, on aiortc.

* ``PublisherPeer``: the client offers (its tracks, its data channels), the emulator answers.
* ``SubscriberPeer``: the emulator offers the room's other tracks, relayed, and the client
  answers. Offers are serialised: one is outstanding at a time; changes made meanwhile are
  sent in the next one.

No STUN/TURN servers (nothing outside is reachable): aiortc puts its host candidates in the
SDP it sends, so the emulator never trickles; the client's trickled candidates are added with
``addIceCandidate`` (kept until the remote description is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from .data import OutgoingChannels
from .sdp import rewrite_msid

log = logging.getLogger("livekit_emulator.rtc.peer")

ANSWER_SLOW_S = 10.0
ANSWER_TIMEOUT_S = 60.0


def new_peer_connection() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


class _CandidateSink:
    """Remote candidates for a peer connection, held until its remote description is set and
    de-duplicated (the SDK trickles the same address once per media section)."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self._pc = pc
        self._pending: list[RTCIceCandidate | None] = []
        self._seen: set[tuple[str, str, int]] = set()

    async def add(self, candidate: RTCIceCandidate | None) -> None:
        if candidate is not None:
            key = (candidate.protocol.lower(), candidate.ip, candidate.port)
            if key in self._seen:
                return
            self._seen.add(key)
        if self._pc.remoteDescription is None:
            self._pending.append(candidate)
            return
        await self._pc.addIceCandidate(candidate)

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        for candidate in pending:
            await self._pc.addIceCandidate(candidate)


class PublisherPeer:
    """Receives the client's tracks and data. ``on_track(mid, track)`` is called for every
    media section the client sends on (the SDK pre-creates some that never carry media),
    ``on_data(label, packet)`` for every message on the client's data channels."""

    def __init__(
        self,
        on_track: Callable[[str, MediaStreamTrack], None],
        on_data: Callable[[str, bytes], None],
    ) -> None:
        self.pc = new_peer_connection()
        self._candidates = _CandidateSink(self.pc)
        self._on_track = on_track
        self._on_data = on_data
        self._lock = asyncio.Lock()
        self.pc.on("track", self._track)
        self.pc.on("datachannel", self._datachannel)

    def _datachannel(self, channel: RTCDataChannel) -> None:
        label = channel.label

        def message(data: bytes | str) -> None:
            if isinstance(data, bytes):
                self._on_data(label, data)

        channel.on("message", message)

    def _track(self, track: MediaStreamTrack) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track and transceiver.mid is not None:
                self._on_track(transceiver.mid, track)
                return
        log.warning("publisher track %s without a media section", track.id)

    async def answer(self, offer_sdp: str) -> str:
        """The answer to the client's (re)offer, with the emulator's candidates in it."""
        async with self._lock:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            await self._candidates.flush()
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            return self.pc.localDescription.sdp

    def transceiver(self, mid: str) -> RTCRtpTransceiver | None:
        return next((t for t in self.pc.getTransceivers() if t.mid == mid), None)

    async def add_candidate(self, candidate: RTCIceCandidate | None) -> None:
        await self._candidates.add(candidate)

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class _Outgoing:
    participant_sid: str
    track_sid: str
    transceiver: RTCRtpTransceiver
    announced: bool = False  # the publisher was told (track_subscribed)


SendOffer = Callable[[str, int, dict[str, str]], Awaitable[None]]


class SubscriberPeer:
    """Sends the room's tracks and data packets to the client. ``send_offer(sdp, offer_id,
    mid_to_track)`` delivers an offer; ``set_answer`` completes it. The first offer goes out
    at once, with the server's data channels (as the real server does after the join).
    ``on_subscribed(track_sid)`` is called once per track whose offer the client answered."""

    def __init__(
        self,
        send_offer: SendOffer,
        on_subscribed: Callable[[str], None] = lambda sid: None,
        label: str = "",
    ) -> None:
        self.label = label  # who it serves, for the logs
        self.pc = new_peer_connection()
        self._on_subscribed = on_subscribed
        self.data = OutgoingChannels(self.pc)
        self._candidates = _CandidateSink(self.pc)
        self._send_offer = send_offer
        self._outgoing: dict[str, _Outgoing] = {}
        self._answer: asyncio.Future[str] | None = None
        self._offer_id = 0
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.negotiations = 0  # offers answered
        self._negotiated = asyncio.Event()

    def start(self) -> None:
        self._dirty.set()
        self._task = asyncio.create_task(self._negotiate_forever(), name="rtc-subscriber")

    def has(self, track_sid: str) -> bool:
        return track_sid in self._outgoing

    def add(self, participant_sid: str, track_sid: str, track: MediaStreamTrack) -> None:
        if track_sid in self._outgoing:
            return
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        self._outgoing[track_sid] = _Outgoing(participant_sid, track_sid, transceiver)
        self._dirty.set()

    async def remove(self, track_sid: str) -> None:
        out = self._outgoing.pop(track_sid, None)
        if out is None:
            return
        # aiortc cannot drop a media section: it goes inactive, as browsers do.
        out.transceiver.direction = "inactive"
        self._stop_sending(out)
        self._dirty.set()

    @staticmethod
    def _stop_sending(out: _Outgoing) -> None:
        # Stopping the relayed track unregisters it from its MediaRelay, whose queue for it
        # would grow otherwise.
        track = out.transceiver.sender.track
        with contextlib.suppress(Exception):
            out.transceiver.sender.replaceTrack(None)
        if track is not None:
            track.stop()

    def set_answer(self, sdp: str, answer_id: int = 0) -> None:
        """The client's answer; ``answer_id`` (0: not given) names the offer it answers."""
        if answer_id and answer_id != self._offer_id:
            log.warning(
                "%s: subscriber answer to offer %d while offer %d is the current one: ignored",
                self.label, answer_id, self._offer_id,
            )  # fmt: skip
            return
        if self._answer is None or self._answer.done():
            log.warning("%s: subscriber answer without an outstanding offer: ignored", self.label)
            return
        self._answer.set_result(sdp)

    async def add_candidate(self, candidate: RTCIceCandidate | None) -> None:
        await self._candidates.add(candidate)

    async def _negotiate_forever(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._negotiate()
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                # A slow client must not lose its subscriptions for good: offer again (the
                # late answer to this offer is then recognised by its id and ignored).
                log.warning(
                    "%s: no answer to subscriber offer %d within %.0f s: offering again",
                    self.label, self._offer_id, ANSWER_TIMEOUT_S,
                )  # fmt: skip
                self._dirty.set()
            except Exception:
                log.exception("%s: subscriber negotiation failed", self.label)

    async def _negotiate(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        msid: dict[str, tuple[str, str]] = {}
        mid_to_track: dict[str, str] = {}
        for out in self._outgoing.values():
            mid = out.transceiver.mid
            if mid is not None:
                msid[mid] = (f"{out.participant_sid}|{out.track_sid}", out.track_sid)
                mid_to_track[mid] = out.track_sid
        self._offer_id += 1
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        sdp = rewrite_msid(self.pc.localDescription.sdp, msid)
        await self._send_offer(sdp, self._offer_id, mid_to_track)
        try:
            answer = await asyncio.wait_for(asyncio.shield(self._answer), ANSWER_SLOW_S)
        except TimeoutError:
            # A busy client answers late (seen: 11 s with many calls on 2 cores); its answer
            # still counts until ANSWER_TIMEOUT_S.
            log.warning(
                "%s: subscriber offer %d not answered after %.0f s; still waiting",
                self.label, self._offer_id, ANSWER_SLOW_S,
            )  # fmt: skip
            answer = await asyncio.wait_for(self._answer, ANSWER_TIMEOUT_S - ANSWER_SLOW_S)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await self._candidates.flush()
        for track_sid in mid_to_track.values():
            sent = self._outgoing.get(track_sid)
            if sent is not None and not sent.announced:
                sent.announced = True
                self._on_subscribed(track_sid)
        self.negotiations += 1
        self._negotiated.set()

    async def wait_negotiations(self, count: int) -> None:
        """Until ``count`` offers have been answered in all."""
        while self.negotiations < count:
            self._negotiated.clear()
            await self._negotiated.wait()

    async def close(self) -> None:
        for out in self._outgoing.values():
            self._stop_sending(out)
        self._outgoing.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pc.close()
