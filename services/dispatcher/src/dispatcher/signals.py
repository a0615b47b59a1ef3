"""Signals about a dispatch's progress, from the three sources (fastest first): our workers'
events, LiveKit webhooks and polling. Whichever arrives first moves the dispatch; the rest are
refused by the transition script and are harmless."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import msgspec
from livekit import api

from agentline.schema import WorkerEvent, WorkerEventKind


class SignalKind(StrEnum):
    ASSIGNED = "assigned"  # a worker accepted the job
    JOINED = "joined"  # the agent participant is in the room
    SPEAKING = "speaking"  # the agent published audio
    AGENT_LEFT = "agent_left"  # the agent participant left the room
    JOB_ENDED = "job_ended"  # the worker reports the job ended
    JOB_FAILED = "job_failed"  # the worker reports the job failed before the agent spoke
    ROOM_FINISHED = "room_finished"


class Source(StrEnum):
    WORKER = "worker"
    WEBHOOK = "webhook"
    POLL = "poll"


@dataclass(frozen=True, slots=True)
class Signal:
    kind: SignalKind
    source: Source
    dispatch_id: str = ""  # known for worker events; webhooks name the room
    room: str = ""
    job_id: str = ""
    worker_id: str = ""
    agent_identity: str = ""
    participant_sid: str = ""
    agent_name: str = ""  # of the agent participant, when LiveKit says it
    detail: str = ""


_WORKER_KINDS: dict[WorkerEventKind, SignalKind] = {
    WorkerEventKind.ACCEPTED: SignalKind.ASSIGNED,
    WorkerEventKind.JOINED: SignalKind.JOINED,
    WorkerEventKind.AUDIO_PUBLISHED: SignalKind.SPEAKING,
    WorkerEventKind.ENDED: SignalKind.JOB_ENDED,
    WorkerEventKind.FAILED: SignalKind.JOB_FAILED,
}


def from_worker_event(event: WorkerEvent) -> Signal | None:
    """request_received and rejected move nothing (LiveKit may offer the job elsewhere)."""
    kind = _WORKER_KINDS.get(event.kind)
    if kind is None or not event.dispatch_id:
        return None
    return Signal(
        kind=kind,
        source=Source.WORKER,
        dispatch_id=event.dispatch_id,
        room=event.room,
        job_id=event.job_id,
        worker_id=event.worker_id,
        agent_identity=event.agent_identity,
        participant_sid=event.participant_sid,
        agent_name=event.agent_name,
        detail=" ".join(part for part in (event.stage, event.reason, event.error) if part),
    )


class _WebhookRoom(msgspec.Struct):
    name: str = ""


class _WebhookParticipant(msgspec.Struct):
    sid: str = ""
    identity: str = ""
    kind: str | int = 0  # protojson writes enum names; the default (STANDARD) is left out
    attributes: dict[str, str] = msgspec.field(default_factory=dict)


class _WebhookTrack(msgspec.Struct):
    type: str | int = 0  # AUDIO is the enum's default, so LiveKit leaves it out


class WebhookBody(msgspec.Struct):
    """The fields of a LiveKit ``WebhookEvent`` (protojson) that can move a dispatch.

    Decoded with msgspec instead of protobuf's ``json_format.Parse``, which costs ~100 µs per
    webhook (a fifth of the webhook's handling); a test holds it to ``Parse`` on the recorded
    webhooks of a real server."""

    event: str = ""
    # events LiveKit dropped since its last send (its sender queue was full)
    num_dropped: int = msgspec.field(default=0, name="numDropped")
    room: _WebhookRoom = msgspec.field(default_factory=_WebhookRoom)
    participant: _WebhookParticipant = msgspec.field(default_factory=_WebhookParticipant)
    track: _WebhookTrack = msgspec.field(default_factory=_WebhookTrack)


webhook_decoder = msgspec.json.Decoder(WebhookBody)

_AGENT_KIND = ("AGENT", api.ParticipantInfo.Kind.AGENT)
_AUDIO_TYPE = ("AUDIO", api.TrackType.AUDIO)


def _agent_name(participant: _WebhookParticipant) -> str:
    attributes = participant.attributes
    return attributes.get("lk.agent_name", attributes.get("lk.agent.name", ""))


def from_webhook(event: WebhookBody) -> Signal | None:
    """participant_joined (kind AGENT), track_published (audio; the participant is given by sid
    and identity only, matched to the join later), participant_left (AGENT), room_finished."""
    room = event.room.name
    if not room:
        return None
    participant = event.participant
    if event.event == "room_finished":
        return Signal(SignalKind.ROOM_FINISHED, Source.WEBHOOK, room=room)
    if event.event in ("participant_joined", "participant_left"):
        if participant.kind not in _AGENT_KIND:
            return None
        kind = SignalKind.JOINED if event.event == "participant_joined" else SignalKind.AGENT_LEFT
        return Signal(
            kind,
            Source.WEBHOOK,
            room=room,
            agent_identity=participant.identity,
            participant_sid=participant.sid,
            agent_name=_agent_name(participant),
        )
    if event.event == "track_published" and event.track.type in _AUDIO_TYPE:
        return Signal(
            SignalKind.SPEAKING,
            Source.WEBHOOK,
            room=room,
            agent_identity=participant.identity,
            participant_sid=participant.sid,
        )
    return None
