"""Rooms as the WebRTC side sees them: which signalling sessions are in which room, the tracks
they publish (each one decoded by aiortc and relayed to subscribers with ``MediaRelay``) and the
``ParticipantUpdate`` fan-out. Joins, publications and departures go through the emulator's
``RoomManager``, so a WebRTC participant shows in ListParticipants, sends the same webhooks
and counts as an agent exactly as a simulated worker's participant does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from livekit.protocol import models, rtc

from .. import ids
from ..config import AGENT_PROTOCOL, SERVER_PROTOCOL, SERVER_VERSION
from ..model import Participant, Room, Track
from .data import stamp

if TYPE_CHECKING:
    from .peer import SubscriberPeer

log = logging.getLogger("livekit_emulator.rtc.hub")


class Member(Protocol):
    """What the hub needs of a signalling session."""

    participant: Participant
    room: Room
    auto_subscribe: bool
    subscriber: SubscriberPeer

    def send(self, message: rtc.SignalResponse) -> None: ...


@dataclass(eq=False)
class PublishedTrack:
    """A track a WebRTC participant publishes, as the emulator receives it."""

    room: Room
    participant: Participant
    track: Track
    source: MediaStreamTrack
    relay: MediaRelay = field(default_factory=MediaRelay)
    frames: int = 0
    first_frame_at: float = 0.0
    drain: asyncio.Task[None] | None = None

    def start(self) -> None:
        # aiortc queues every decoded frame on the source until it is read: one unbuffered
        # reader keeps it drained whether or not anybody subscribes, and counts frames.
        self.drain = asyncio.create_task(self._drain(), name=f"rtc-drain-{self.track.sid}")

    async def _drain(self) -> None:
        reader = self.relay.subscribe(self.source, buffered=False)
        try:
            while True:
                await reader.recv()
                if not self.frames:
                    self.first_frame_at = time.monotonic()
                self.frames += 1
        except MediaStreamError:
            return
        finally:
            reader.stop()

    def subscribe(self) -> MediaStreamTrack:
        return self.relay.subscribe(self.source, buffered=True)

    async def stop(self) -> None:
        if self.drain is not None:
            self.drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.drain


class RtcHub:
    def __init__(self, emu: Any) -> None:
        # The emulator (its ``rooms`` RoomManager and ``config``).
        self.emu = emu
        self.members: dict[str, dict[str, Member]] = {}  # room name -> participant sid -> member
        self.published: dict[str, PublishedTrack] = {}  # track sid -> track
        self.sessions: set[Any] = set()  # open signalling sessions
        self.data_packets = 0  # data packets forwarded
        # Milestones of the last sessions (ms since their socket opened), newest last.
        self.timelines: deque[dict[str, Any]] = deque(maxlen=1000)
        # Every join, publication and departure (simulated agents' included) reaches the
        # room's WebRTC clients as a ParticipantUpdate.
        emu.rooms.on_change.append(self.broadcast)
        self.server_info = models.ServerInfo(
            version=SERVER_VERSION,
            protocol=SERVER_PROTOCOL,
            node_id=ids.guid(ids.NODE),
            agent_protocol=AGENT_PROTOCOL,
        )

    def room_members(self, room: Room) -> list[Member]:
        return list(self.members.get(room.name, {}).values())

    def join(self, member: Member) -> None:
        """Add ``member`` (whose participant is already built) to its room."""
        room, participant = member.room, member.participant
        self.emu.rooms.join(room, participant)  # the others get its update
        self.members.setdefault(room.name, {})[participant.sid] = member

    def others(self, member: Member) -> list[models.ParticipantInfo]:
        """Everybody else in the room (simulated agents included, hidden ones not), for the
        JoinResponse."""
        return [
            p.proto()
            for p in member.room.participants.values()
            if p is not member.participant
            and p.state != models.ParticipantInfo.DISCONNECTED
            and not p.permission.hidden
        ]

    def subscribe_existing(self, member: Member) -> None:
        """A newcomer gets every track already published in its room."""
        if not self._can_subscribe(member):
            return
        for pub in self.published.values():
            if pub.room is member.room and pub.participant is not member.participant:
                member.subscriber.add(pub.participant.sid, pub.track.sid, pub.subscribe())

    def subscribe(self, member: Member, track_sid: str) -> bool:
        """Send ``track_sid`` to ``member`` (a manual subscription); False when no such track
        is published in its room."""
        pub = self.published.get(track_sid)
        if pub is None or pub.room is not member.room or pub.participant is member.participant:
            return False
        if member.participant.permission.can_subscribe and not member.subscriber.has(track_sid):
            member.subscriber.add(pub.participant.sid, track_sid, pub.subscribe())
        return True

    def track_subscribed(self, track_sid: str) -> None:
        """Tell a track's publisher it has a subscriber (``TrackSubscribed``): the SDK's
        ``wait_for_subscription()``, which livekit-agents' audio output awaits before it
        plays anything."""
        pub = self.published.get(track_sid)
        if pub is None:
            return
        for member in self.room_members(pub.room):
            if member.participant is pub.participant:
                member.send(
                    rtc.SignalResponse(track_subscribed=rtc.TrackSubscribed(track_sid=track_sid))
                )

    def publish(self, member: Member, track: Track, source: MediaStreamTrack) -> PublishedTrack:
        room, participant = member.room, member.participant
        pub = PublishedTrack(room=room, participant=participant, track=track, source=source)
        pub.start()
        self.published[track.sid] = pub
        self.emu.rooms.publish(room, participant, track)  # everybody gets the update
        for other in self.room_members(room):
            if other is not member and self._can_subscribe(other):
                other.subscriber.add(participant.sid, track.sid, pub.subscribe())
        return pub

    async def unpublish(self, member: Member, track_sid: str) -> bool:
        """The client stopped sending a track (renegotiated it away)."""
        pub = self.published.get(track_sid)
        if pub is None or pub.participant is not member.participant:
            return False
        del self.published[track_sid]
        await self._stop_relaying(pub)
        self.emu.rooms.unpublish(member.room, member.participant, track_sid)
        return True

    async def _stop_relaying(self, pub: PublishedTrack) -> None:
        for other in self.room_members(pub.room):
            await other.subscriber.remove(pub.track.sid)
        await pub.stop()

    def update_metadata(
        self, member: Member, name: str, metadata: str, attributes: dict[str, str]
    ) -> None:
        """Empty ``name``/``metadata`` leave them as they are; an attribute set to "" is
        deleted (the server's rules)."""
        participant = member.participant
        if name:
            participant.name = name
        if metadata:
            participant.metadata = metadata
        for key, value in attributes.items():
            if value:
                participant.attributes[key] = value
            else:
                participant.attributes.pop(key, None)
        participant.version += 1
        self.broadcast(member.room, participant)

    def forward_data(self, member: Member, label: str, raw: bytes) -> None:
        """A data packet from ``member`` to its destinations (everyone else by default)."""
        sender = member.participant
        if not sender.permission.can_publish_data:
            log.warning("%s: data packet without canPublishData dropped", sender.identity)
            return
        stamped = stamp(raw, sender.identity, sender.sid)
        if stamped is None:
            log.warning("%s: undecodable data packet dropped", sender.identity)
            return
        data, destinations = stamped
        for other in self.room_members(member.room):
            if other is member:
                continue
            if destinations and other.participant.identity not in destinations:
                continue
            other.subscriber.data.send(label, data)
        self.data_packets += 1

    def set_muted(self, member: Member, track_sid: str, muted: bool) -> bool:
        track = member.participant.tracks.get(track_sid)
        if track is None or track.muted == muted:
            return False
        track.muted = muted
        member.participant.version += 1
        self.broadcast(member.room, member.participant)
        return True

    async def leave(self, member: Member, reason: int) -> None:
        """``member`` leaves (or was removed): its tracks stop being relayed, the others get its
        DISCONNECTED update; the room manager sends the webhooks (idempotent)."""
        room, participant = member.room, member.participant
        in_room = self.members.get(room.name, {})
        if in_room.get(participant.sid) is not member:
            return
        del in_room[participant.sid]
        if not in_room:
            self.members.pop(room.name, None)
        mine = [p for p in self.published.values() if p.participant is participant]
        for pub in mine:
            del self.published[pub.track.sid]
            await self._stop_relaying(pub)
        self.emu.rooms.leave(room, participant, reason)  # no-op when removed by the server

    def broadcast(
        self, room: Room, participant: Participant, exclude: Member | None = None
    ) -> None:
        """``ParticipantUpdate`` with ``participant``'s current info to the room's sessions
        (a hidden participant's only to itself, as the real server keeps it out of sight)."""
        if participant.permission.hidden:
            for member in self.room_members(room):
                if member.participant is participant and member is not exclude:
                    member.send(
                        rtc.SignalResponse(
                            update=rtc.ParticipantUpdate(participants=[participant.proto()])
                        )
                    )
            return
        message = rtc.SignalResponse(
            update=rtc.ParticipantUpdate(participants=[participant.proto()])
        )
        for member in self.room_members(room):
            if member is not exclude:
                member.send(message)

    @staticmethod
    def _can_subscribe(member: Member) -> bool:
        return member.auto_subscribe and bool(member.participant.permission.can_subscribe)

    def snapshot(self) -> dict[str, Any]:
        """The media view for the admin API and tests."""
        return {
            "rooms": {name: sorted(m) for name, m in self.members.items()},
            "tracks": [
                {
                    "room": p.room.name,
                    "participant": p.participant.identity,
                    "track_sid": p.track.sid,
                    "frames_received": p.frames,
                }
                for p in self.published.values()
            ],
            "sessions": [
                {"room": s.room.name, "identity": s.participant.identity, **s.timeline}
                for s in self.sessions
            ],
            "closed_sessions": list(self.timelines),
        }
