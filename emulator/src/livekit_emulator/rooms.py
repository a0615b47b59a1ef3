"""Room lifecycle: creation, participants and tracks, timeouts, closing, with their webhooks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from livekit.protocol import models

from . import ids
from .model import Participant, Room, Track

if TYPE_CHECKING:
    from .server import Emulator

DISCONNECTED = models.ParticipantInfo.State.DISCONNECTED
_KINDS = {
    "": models.ParticipantInfo.Kind.STANDARD,
    "standard": models.ParticipantInfo.Kind.STANDARD,
    "ingress": models.ParticipantInfo.Kind.INGRESS,
    "egress": models.ParticipantInfo.Kind.EGRESS,
    "sip": models.ParticipantInfo.Kind.SIP,
    "agent": models.ParticipantInfo.Kind.AGENT,
}


def participant_from_claims(claims: dict[str, Any], origin: str) -> Participant:
    """The participant a join token describes (identity, name, metadata, attributes, kind and
    permissions), as the server builds it when the token's holder joins."""
    video = claims.get("video") or {}
    kind = _KINDS.get(str(claims.get("kind") or "").lower(), models.ParticipantInfo.Kind.STANDARD)
    permission = models.ParticipantPermission(
        can_subscribe=bool(video.get("canSubscribe", True)),
        can_publish=bool(video.get("canPublish", True)),
        can_publish_data=bool(video.get("canPublishData", True)),
        hidden=bool(video.get("hidden", False)),
        recorder=bool(video.get("recorder", False)),
        can_update_metadata=bool(video.get("canUpdateOwnMetadata", False)),
        agent=bool(video.get("agent", False)),
        can_subscribe_metrics=bool(video.get("canSubscribeMetrics", False)),
    )
    return Participant(
        sid=ids.guid(ids.PARTICIPANT),
        identity=str(claims.get("sub") or claims.get("identity") or ""),
        name=str(claims.get("name") or ""),
        metadata=str(claims.get("metadata") or ""),
        attributes={str(k): str(v) for k, v in (claims.get("attributes") or {}).items()},
        kind=kind,
        permission=permission,
        origin=origin,
    )


class RoomManager:
    def __init__(self, emu: Emulator) -> None:
        self._emu = emu
        self._state = emu.state
        # Called with (room, participant) after a participant joins, publishes, unpublishes or
        # leaves: the WebRTC side sends its ParticipantUpdate to the room's clients.
        self.on_change: list[Callable[[Room, Participant], None]] = []

    def _changed(self, room: Room, participant: Participant) -> None:
        for callback in self.on_change:
            callback(room, participant)

    def get(self, name: str) -> Room | None:
        return self._state.rooms.get(name)

    def create(
        self,
        name: str,
        *,
        empty_timeout: int = 0,
        departure_timeout: int = 0,
        max_participants: int = 0,
        metadata: str = "",
        agents: Iterable[Any] | None = None,
    ) -> tuple[Room, bool]:
        """The room ``name``, created when absent (then with its dispatches: the listed
        ``agents`` when given, else the default ``""`` dispatch). An existing room is returned
        unchanged, its ``agents`` configuration ignored, as the real server does."""
        room = self._state.rooms.get(name)
        if room is not None:
            return room, False
        config = self._emu.config
        empty_after = float(empty_timeout or config.empty_timeout)
        depart_after = float(departure_timeout or config.departure_timeout)
        room = Room(
            name=name,
            empty_timeout=round(empty_after),
            departure_timeout=round(depart_after),
            max_participants=max_participants,
            metadata=metadata,
            empty_after_s=empty_after,
            depart_after_s=depart_after,
        )
        self._state.rooms[name] = room
        self._emu.webhooks.emit("room_started", room)
        self._schedule_close(room, empty_after)
        agents = list(agents or [])
        engine = self._emu.engine
        if agents:
            for a in agents:
                engine.create_dispatch(
                    room,
                    a.agent_name,
                    metadata=a.metadata,
                    attributes=dict(a.attributes),
                    deployment=a.deployment,
                )
        else:
            engine.create_dispatch(room, "")
        return room, True

    def _schedule_close(self, room: Room, delay: float) -> None:
        if room.close_timer is not None:
            room.close_timer.cancel()
        loop = asyncio.get_running_loop()
        room.close_timer = loop.call_later(delay, self._close_if_empty, room)

    def _close_if_empty(self, room: Room) -> None:
        room.close_timer = None
        if not room.closed and not room.participants:
            self.close(room, models.DisconnectReason.ROOM_CLOSED)

    def update_metadata(self, room: Room, metadata: str) -> None:
        room.metadata = metadata
        room.webhook_cache = None

    def join(self, room: Room, participant: Participant) -> None:
        """A participant joins (its ``participant_joined`` webhook); an older participant with
        the same identity is disconnected first."""
        old = room.participants.get(participant.identity)
        if old is not None:
            self.leave(room, old, models.DisconnectReason.DUPLICATE_IDENTITY)
        if room.close_timer is not None:
            room.close_timer.cancel()
            room.close_timer = None
        room.participants[participant.identity] = participant
        room.had_participants = True
        if participant.is_agent:
            count = len(room.agents())
            if count > self._state.max_agents_seen.get(room.name, 0):
                self._state.max_agents_seen[room.name] = count
        self._emu.webhooks.emit("participant_joined", room, participant)
        self._changed(room, participant)

    def publish(self, room: Room, participant: Participant, track: Track) -> None:
        participant.tracks[track.sid] = track
        participant.is_publisher = True
        participant.version += 2
        self._emu.webhooks.emit("track_published", room, participant, track)
        self._changed(room, participant)

    def unpublish(
        self, room: Room, participant: Participant, track_sid: str, *, bump: bool = True
    ) -> None:
        track = participant.tracks.pop(track_sid, None)
        if track is not None:
            if bump:
                participant.version += 1
            self._emu.webhooks.emit("track_unpublished", room, participant, track)
            self._changed(room, participant)

    def leave(
        self,
        room: Room,
        participant: Participant,
        reason: int = models.DisconnectReason.CLIENT_INITIATED,
    ) -> None:
        """A participant leaves: its tracks are unpublished, ``participant_left`` is sent, an
        agent's job gets its JobTermination, and the departure timeout starts when the room
        is left empty."""
        if room.participants.get(participant.identity) is not participant:
            return
        for sid in list(participant.tracks):
            self.unpublish(room, participant, sid, bump=False)
        del room.participants[participant.identity]
        participant.state = DISCONNECTED
        participant.disconnect_reason = reason
        participant.version += 1
        self._emu.webhooks.emit("participant_left", room, participant)
        self._changed(room, participant)
        if participant.is_agent:
            self._emu.engine.on_agent_left(room, participant)
        for callback in participant.on_leave:
            callback(participant)
        if not room.participants and not room.closed:
            self._schedule_close(room, room.depart_after_s)

    def close(self, room: Room, reason: int = models.DisconnectReason.ROOM_DELETED) -> None:
        """Close the room: everybody is disconnected, then ``room_finished``."""
        if room.closed:
            return
        room.closed = True
        if room.close_timer is not None:
            room.close_timer.cancel()
            room.close_timer = None
        for participant in list(room.participants.values()):
            self.leave(room, participant, reason)
        for callback in room.on_close:
            callback(room)
        self._emu.engine.on_room_closed(room)
        if self._state.rooms.get(room.name) is room:
            del self._state.rooms[room.name]
        self._emu.webhooks.emit("room_finished", room)
