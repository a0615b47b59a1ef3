"""One ``/rtc`` signalling session: a participant's WebSocket and its two peer connections.

The order follows the real server (golden ``rtc-signal/v0_fallback_session.json``): the
``JoinResponse`` first, then requests answered as they come. ``subscriber_primary`` is false,
so the SDK offers on its publisher connection at once (its data channels included) and
waits for that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from aiortc import MediaStreamTrack
from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from .. import ids
from ..model import Participant, Room, Track
from .peer import PublisherPeer, SubscriberPeer
from .sdp import BadCandidate, media_sections, parse_candidate_init

if TYPE_CHECKING:
    from .hub import RtcHub

log = logging.getLogger("livekit_emulator.rtc.session")

PING_INTERVAL_S = 5
PING_TIMEOUT_S = 15
# What the emulator can receive: aiortc decodes Opus (no RED), VP8 and H264.
PUBLISH_CODECS = ("audio/opus", "video/VP8", "video/H264")
CLIENT_INITIATED = models.DisconnectReason.CLIENT_INITIATED


@dataclass
class PendingTrack:
    """An ``add_track`` request, waiting for the offer that carries its media."""

    request: rtc.AddTrackRequest
    sid: str
    requested_at: float


class SignalSession:
    def __init__(
        self,
        hub: RtcHub,
        ws: web.WebSocketResponse,
        room: Room,
        participant: Participant,
        auto_subscribe: bool,
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.room = room
        self.participant = participant
        self.auto_subscribe = auto_subscribe
        self.publisher = PublisherPeer(self._on_publisher_track, self._on_data)
        self.subscriber = SubscriberPeer(
            self._send_offer, self._subscribed, label=f"{participant.identity} ({room.name})"
        )
        self._pending: dict[str, PendingTrack] = {}  # cid -> add_track not yet bound
        self._bound: dict[str, str] = {}  # cid -> track sid, published
        self._outbox: asyncio.Queue[rtc.SignalResponse | None] = asyncio.Queue()
        self._left = False
        self._leave_reason: int = CLIENT_INITIATED
        self._closer: asyncio.Task[None] | None = None
        # Milestones in ms since the socket opened (join, offer, answer, publisher state...).
        self._opened = time.monotonic()
        self.timeline: dict[str, float] = {}
        self.publisher.pc.on("connectionstatechange", self._publisher_state)

    # -- outgoing -------------------------------------------------------------------------

    def send(self, message: rtc.SignalResponse) -> None:
        if not self._left:
            self._outbox.put_nowait(message)

    async def _writer(self) -> None:
        while (message := await self._outbox.get()) is not None:
            try:
                await self.ws.send_bytes(message.SerializeToString())
            except (ConnectionError, RuntimeError):
                return

    async def _send_offer(self, sdp: str, offer_id: int, mid_to_track: dict[str, str]) -> None:
        self.send(
            rtc.SignalResponse(
                offer=rtc.SessionDescription(
                    type="offer", sdp=sdp, id=offer_id, mid_to_track_id=mid_to_track
                )
            )
        )

    def _subscribed(self, track_sid: str) -> None:
        self.hub.track_subscribed(track_sid)

    def _join_response(self) -> rtc.JoinResponse:
        return rtc.JoinResponse(
            room=self.room.proto(),
            participant=self.participant.proto(),
            other_participants=self.hub.others(self),
            server_version=self.hub.server_info.version,
            ice_servers=[],
            subscriber_primary=False,
            ping_timeout=PING_TIMEOUT_S,
            ping_interval=PING_INTERVAL_S,
            server_info=self.hub.server_info,
            enabled_publish_codecs=[models.Codec(mime=m) for m in PUBLISH_CODECS],
            fast_publish=True,
        )

    # -- the session ----------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._writer(), name="rtc-writer")
        self.participant.on_leave.append(self._removed_by_server)
        try:
            self.hub.join(self)
            self.send(rtc.SignalResponse(join=self._join_response()))
            self.timeline["join_sent"] = self._ms()
            self.subscriber.start()
            self.hub.subscribe_existing(self)
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    log.debug("ignored %s frame on /rtc", msg.type)
                    continue
                request = rtc.SignalRequest()
                try:
                    request.ParseFromString(msg.data)
                except DecodeError:
                    log.warning("%s: undecodable SignalRequest ignored", self.participant.identity)
                    continue
                try:
                    await self.handle(request)
                except Exception as exc:
                    # A bad SDP or candidate is the client's error: say so, keep the session.
                    log.warning(
                        "%s: %s request failed: %s: %s",
                        self.participant.identity,
                        request.WhichOneof("message"),
                        type(exc).__name__,
                        exc,
                    )
                if self._left:
                    break
        finally:
            await self._close()
            self._outbox.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(writer, 2.0)
            await self.ws.close()

    async def _close(self) -> None:
        reason, self._left = self._leave_reason, True
        self.hub.timelines.append(
            {"room": self.room.name, "identity": self.participant.identity, **self.timeline}
        )
        await self.hub.leave(self, reason)
        await self.subscriber.close()
        await self.publisher.close()

    def _removed_by_server(self, participant: Participant) -> None:
        """The room manager removed the participant (RemoveParticipant, DeleteRoom, duplicate
        identity): tell the client, then close the socket."""
        if self._left or participant.disconnect_reason == CLIENT_INITIATED:
            return
        self._leave_reason = participant.disconnect_reason
        self.send(
            rtc.SignalResponse(
                leave=rtc.LeaveRequest(
                    reason=participant.disconnect_reason,  # type: ignore[arg-type]
                    action=rtc.LeaveRequest.Action.DISCONNECT,
                )
            )
        )
        self._left = True
        self._closer = asyncio.create_task(self._close_socket_soon())

    async def _close_socket_soon(self) -> None:
        await asyncio.sleep(0.2)  # let the leave message go out first
        await self.ws.close()

    def _publisher_state(self) -> None:
        state = self.publisher.pc.connectionState
        self.timeline[f"publisher_{state}"] = self._ms()
        level = logging.INFO if state in ("connected", "failed") else logging.DEBUG
        log.log(
            level,
            "%s (room %s) publisher connection %s after %.0f ms (milestones, ms: %s)",
            self.participant.identity,
            self.room.name,
            state,
            self._ms(),
            self.timeline,
        )

    def _ms(self) -> float:
        return round((time.monotonic() - self._opened) * 1000, 1)

    # -- requests -------------------------------------------------------------------------

    async def handle(self, request: rtc.SignalRequest) -> None:
        kind = request.WhichOneof("message")
        if kind == "offer":
            await self._on_offer(request.offer)
        elif kind == "answer":
            self.subscriber.set_answer(request.answer.sdp, request.answer.id)
        elif kind == "trickle":
            await self._on_trickle(request.trickle)
        elif kind == "add_track":
            self._on_add_track(request.add_track)
        elif kind == "mute":
            self.hub.set_muted(self, request.mute.sid, request.mute.muted)
        elif kind == "ping_req":
            now_ms = time.time_ns() // 1_000_000
            self.send(
                rtc.SignalResponse(
                    pong_resp=rtc.Pong(
                        last_ping_timestamp=request.ping_req.timestamp, timestamp=now_ms
                    )
                )
            )
        elif kind == "ping":
            self.send(rtc.SignalResponse(pong=time.time_ns() // 1_000_000))
        elif kind == "subscription":
            await self._on_subscription(request.subscription)
        elif kind == "update_metadata":
            self._on_update_metadata(request.update_metadata)
        elif kind == "leave":
            self.send(rtc.SignalResponse(leave=rtc.LeaveRequest(reason=CLIENT_INITIATED)))
            self._leave_reason = CLIENT_INITIATED
            self._left = True
        else:
            log.debug("%s: %s not handled by the emulator", self.participant.identity, kind)

    async def _on_subscription(self, req: rtc.UpdateSubscription) -> None:
        """Manual (un)subscription, as with ``auto_subscribe=False`` (livekit-agents'
        ``AutoSubscribe.AUDIO_ONLY`` subscribes to audio tracks this way)."""
        sids = list(req.track_sids) + [s for pt in req.participant_tracks for s in pt.track_sids]
        for sid in sids:
            if req.subscribe:
                if not self.hub.subscribe(self, sid):
                    self.send(
                        rtc.SignalResponse(
                            subscription_response=rtc.SubscriptionResponse(
                                track_sid=sid, err=models.SubscriptionError.SE_TRACK_NOTFOUND
                            )
                        )
                    )
            else:
                await self.subscriber.remove(sid)

    def _on_update_metadata(self, req: rtc.UpdateParticipantMetadata) -> None:
        """``set_attributes`` / ``set_metadata`` / ``set_name`` (an agent's ``lk.agent.state``):
        applied, announced to the room, acknowledged with a ``RequestResponse``."""
        allowed = bool(self.participant.permission.can_update_metadata)
        if allowed:
            self.hub.update_metadata(self, req.name, req.metadata, dict(req.attributes))
        reason = rtc.RequestResponse.Reason.OK if allowed else rtc.RequestResponse.NOT_ALLOWED
        self.send(
            rtc.SignalResponse(
                request_response=rtc.RequestResponse(
                    request_id=req.request_id,
                    reason=reason,
                    message="" if allowed else "does not have permission to update own metadata",
                    update_metadata=req,
                )
            )
        )

    async def _on_offer(self, offer: rtc.SessionDescription) -> None:
        self.timeline.setdefault("first_offer", self._ms())
        answer = await self.publisher.answer(offer.sdp)
        self.timeline.setdefault("first_answer", self._ms())
        self.send(
            rtc.SignalResponse(
                answer=rtc.SessionDescription(type="answer", sdp=answer, id=offer.id)
            )
        )
        await self._bind_tracks(offer.sdp)

    async def _on_trickle(self, trickle: rtc.TrickleRequest) -> None:
        try:
            candidate = parse_candidate_init(trickle.candidateInit)
        except BadCandidate as exc:
            log.warning("%s: %s", self.participant.identity, exc)
            return
        if candidate is None and not trickle.final:
            return
        peer = self.subscriber if trickle.target == rtc.SignalTarget.SUBSCRIBER else self.publisher
        await peer.add_candidate(candidate)

    def _on_add_track(self, req: rtc.AddTrackRequest) -> None:
        if not self.participant.permission.can_publish:
            log.warning("%s: add_track without canPublish refused", self.participant.identity)
            return
        if req.cid in self._pending or req.cid in self._bound:
            return
        audio = req.type == models.TrackType.AUDIO
        sid = ids.track_sid() if audio else ids.TRACK + "VC" + ids.random_string(12)
        self._pending[req.cid] = PendingTrack(req, sid, time.monotonic())
        info = models.TrackInfo(
            sid=sid,
            type=req.type,
            name=req.name,
            muted=req.muted,
            source=req.source,
            codecs=[
                models.SimulcastCodecInfo(
                    cid=req.cid,
                    video_layer_mode=models.VideoLayer.Mode.ONE_SPATIAL_LAYER_PER_STREAM,
                )
            ],
            stream=req.stream or "camera",
            backup_codec_policy=models.BackupCodecPolicy.SIMULCAST,
        )
        self.send(
            rtc.SignalResponse(track_published=rtc.TrackPublishedResponse(cid=req.cid, track=info))
        )

    def _on_publisher_track(self, mid: str, track: MediaStreamTrack) -> None:
        log.debug("%s: publisher media section %s (%s)", self.participant.identity, mid, track.kind)

    def _on_data(self, label: str, packet: bytes) -> None:
        if not self._left:
            self.hub.forward_data(self, label, packet)

    async def _bind_tracks(self, offer_sdp: str) -> None:
        """Publish the pending tracks whose cid the offer now carries (its msid track id), and
        unpublish the bound ones it no longer sends."""
        sending = {
            s.track_id: s
            for s in media_sections(offer_sdp)
            if s.track_id and s.direction in ("sendonly", "sendrecv")
        }
        for cid, pending in list(self._pending.items()):
            section = sending.get(cid)
            if section is None:
                continue
            transceiver = self.publisher.transceiver(section.mid)
            if transceiver is None or transceiver.receiver.track is None:
                log.warning("%s: no receiver for mid %s", self.participant.identity, section.mid)
                continue
            del self._pending[cid]
            req = pending.request
            audio = req.type == models.TrackType.AUDIO
            track = Track(
                sid=pending.sid,
                name=req.name,
                type=req.type,
                source=req.source,
                mime_type="audio/opus" if audio else "video/VP8",
                mid=section.mid,
                cid=cid,
                stream=req.stream or "camera",
                muted=req.muted,
            )
            self._bound[cid] = track.sid
            self.hub.publish(self, track, transceiver.receiver.track)
        for cid, sid in list(self._bound.items()):
            if cid not in sending:
                del self._bound[cid]
                await self._unpublish(sid)

    async def _unpublish(self, track_sid: str) -> None:
        if await self.hub.unpublish(self, track_sid):
            self.send(
                rtc.SignalResponse(
                    track_unpublished=rtc.TrackUnpublishedResponse(track_sid=track_sid)
                )
            )
