"""The in-memory model: rooms, participants, tracks, dispatches, jobs and workers.

Records are plain dataclasses that render the protobuf messages the API answers with. They
are written so that a WebRTC participant (``/rtc``, a later part) can be added as one more
source of ``Participant`` and ``Track`` records beside the simulated agents.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit.protocol import agent, agent_dispatch, models

from . import ids

ENABLED_CODECS = (
    "audio/PCMU",
    "audio/PCMA",
    "audio/opus",
    "audio/red",
    "video/VP8",
    "video/H264",
    "video/VP9",
    "video/AV1",
    "video/H265",
    "video/rtx",
)
# What the Python SDK announces when it joins (golden webhooks: clientProtocol 2).
CLIENT_PROTOCOL = 2
CLIENT_CAPABILITIES = (
    models.ClientInfo.Capability.CAP_PACKET_TRAILER,
    models.ClientInfo.Capability.CAP_COMPRESSION_DEFLATE_RAW,
)
AGENT_NAME_ATTRIBUTE = "lk.agent_name"


def now_ns() -> int:
    return time.time_ns()


@dataclass(eq=False)
class Track:
    sid: str
    name: str
    type: int = models.TrackType.AUDIO
    source: int = models.TrackSource.MICROPHONE
    mime_type: str = "audio/red"
    mid: str = "0"
    cid: str = field(default_factory=lambda: str(uuid.uuid4()))
    stream: str = "camera"
    muted: bool = False
    published_at_us: int = field(default_factory=lambda: time.time_ns() // 1000)
    # Its webhook rendering (protojson), computed once.
    webhook_cache: dict[str, Any] | None = field(default=None, repr=False)

    def proto(self) -> models.TrackInfo:
        return models.TrackInfo(
            sid=self.sid,
            type=self.type,  # type: ignore[arg-type]
            name=self.name,
            muted=self.muted,
            source=self.source,  # type: ignore[arg-type]
            mime_type=self.mime_type,
            mid=self.mid,
            codecs=[
                models.SimulcastCodecInfo(
                    mime_type=self.mime_type,
                    mid=self.mid,
                    cid=self.cid,
                    video_layer_mode=models.VideoLayer.Mode.ONE_SPATIAL_LAYER_PER_STREAM,
                )
            ],
            stream=self.stream,
            version=models.TimedVersion(unix_micro=self.published_at_us),
            backup_codec_policy=models.BackupCodecPolicy.SIMULCAST,
        )


@dataclass(eq=False)
class Participant:
    sid: str
    identity: str
    name: str = ""
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    kind: int = models.ParticipantInfo.Kind.STANDARD
    permission: models.ParticipantPermission = field(
        default_factory=lambda: models.ParticipantPermission(
            can_subscribe=True, can_publish=True, can_publish_data=True
        )
    )
    joined_at_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    state: int = models.ParticipantInfo.State.ACTIVE
    tracks: dict[str, Track] = field(default_factory=dict)
    version: int = 2
    is_publisher: bool = False
    disconnect_reason: int = models.DisconnectReason.UNKNOWN_REASON
    # The job this participant is the agent of (agent participants only).
    job_id: str = ""
    # Where it comes from: "simulated" (a simulated worker's agent) or "rtc" (a WebRTC join).
    origin: str = "simulated"
    # Called once when it leaves the room (whatever the cause).
    on_leave: list[Callable[[Participant], None]] = field(default_factory=list)

    @property
    def is_agent(self) -> bool:
        return self.kind == models.ParticipantInfo.Kind.AGENT

    def proto(self) -> models.ParticipantInfo:
        return models.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            state=self.state,  # type: ignore[arg-type]
            tracks=[t.proto() for t in self.tracks.values()],
            metadata=self.metadata,
            joined_at=self.joined_at_ms // 1000,
            joined_at_ms=self.joined_at_ms,
            name=self.name,
            version=self.version,
            permission=self.permission,
            is_publisher=self.is_publisher,
            kind=self.kind,  # type: ignore[arg-type]
            attributes=self.attributes,
            disconnect_reason=self.disconnect_reason,  # type: ignore[arg-type]
            client_protocol=CLIENT_PROTOCOL,
            capabilities=list(CLIENT_CAPABILITIES),
        )

    def ref_proto(self) -> models.ParticipantInfo:
        """The participant as track webhooks carry it: sid and identity only."""
        return models.ParticipantInfo(sid=self.sid, identity=self.identity)


@dataclass(eq=False)
class Job:
    id: str
    dispatch_id: str
    agent_name: str
    metadata: str
    room_name: str
    # The room as it was when the job was created (the real server sends that snapshot):
    # rendered on demand from the record and the values that may have changed since.
    room: Room
    room_counts: tuple[int, int] = (0, 0)
    room_metadata: str = ""
    namespace: str = ""
    # The job state as the dispatch store keeps it: what ListDispatch shows. The real server
    # writes it once, when the worker accepts, and never again.
    listed_state: agent.JobState = field(default_factory=agent.JobState)
    # Loop time from which ListDispatch shows the job (real timing delays it).
    visible_at: float = 0.0
    worker_id: str = ""
    participant_identity: str = ""
    # The server's own view (its worker's running-jobs table): updated by UpdateJobStatus,
    # termination and socket loss. Shown by the admin API, not by ListDispatch.
    status: int = agent.JobStatus.JS_PENDING
    error: str = ""
    ended_at_ns: int = 0
    # Every status the worker reported, in order.
    reported: list[str] = field(default_factory=list)
    # Why the job request failed when no worker took it ("" when assigned).
    dropped_reason: str = ""

    def proto(self, state: agent.JobState | None = None) -> agent.Job:
        job = agent.Job(
            id=self.id,
            dispatch_id=self.dispatch_id,
            type=agent.JobType.JT_ROOM,
            room=self.room_snapshot(),
            namespace=self.namespace,
            metadata=self.metadata,
            agent_name=self.agent_name,
        )
        job.state.CopyFrom(state if state is not None else self.listed_state)
        return job

    def room_snapshot(self) -> models.Room:
        snapshot = self.room.proto()
        snapshot.num_participants, snapshot.num_publishers = self.room_counts
        snapshot.metadata = self.room_metadata
        return snapshot

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dispatch_id": self.dispatch_id,
            "agent_name": self.agent_name,
            "room": self.room_name,
            "worker_id": self.worker_id,
            "participant_identity": self.participant_identity,
            "status": agent.JobStatus.Name(self.status),
            "error": self.error,
            "reported": list(self.reported),
            "dropped_reason": self.dropped_reason,
        }


@dataclass(eq=False)
class Dispatch:
    id: str
    agent_name: str
    room_name: str
    metadata: str = ""
    created_at_ns: int = field(default_factory=now_ns)
    restart_policy: int = agent_dispatch.JobRestartPolicy.JRP_ON_FAILURE
    deployment: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)

    def proto(self, now: float | None = None) -> agent_dispatch.AgentDispatch:
        jobs = [j for j in self.jobs if now is None or j.visible_at <= now]
        return agent_dispatch.AgentDispatch(
            id=self.id,
            agent_name=self.agent_name,
            room=self.room_name,
            metadata=self.metadata,
            state=agent_dispatch.AgentDispatchState(
                jobs=[j.proto() for j in jobs], created_at=self.created_at_ns
            ),
            restart_policy=self.restart_policy,  # type: ignore[arg-type]
            deployment=self.deployment,
            attributes=self.attributes,
        )


@dataclass(eq=False)
class Room:
    name: str
    empty_timeout: int
    departure_timeout: int
    max_participants: int = 0
    metadata: str = ""
    sid: str = field(default_factory=lambda: ids.guid(ids.ROOM))
    created_at_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    turn_password: str = field(default_factory=lambda: ids.random_string(44))
    participants: dict[str, Participant] = field(default_factory=dict)
    dispatches: dict[str, Dispatch] = field(default_factory=dict)
    # Agent participant identity -> its job, for JobTermination when the agent leaves.
    agent_jobs: dict[str, Job] = field(default_factory=dict)
    # The timeouts the emulator applies, in seconds (fractions allowed, for tests); the
    # integer fields above are what the API shows.
    empty_after_s: float = 0.0
    depart_after_s: float = 0.0
    closed: bool = False
    had_participants: bool = False
    close_timer: asyncio.TimerHandle | None = None
    # Called once when the room closes (simulated agents end their jobs).
    on_close: list[Callable[[Room], None]] = field(default_factory=list)
    # Its webhook rendering without the participant counts; reset when the room changes.
    webhook_cache: dict[str, Any] | None = field(default=None, repr=False)

    def proto(self) -> models.Room:
        participants, publishers = self.proto_counts()
        return models.Room(
            sid=self.sid,
            name=self.name,
            empty_timeout=self.empty_timeout,
            departure_timeout=self.departure_timeout,
            max_participants=self.max_participants,
            creation_time=self.created_at_ms // 1000,
            creation_time_ms=self.created_at_ms,
            turn_password=self.turn_password,
            enabled_codecs=[models.Codec(mime=m) for m in ENABLED_CODECS],
            metadata=self.metadata,
            num_participants=participants,
            num_publishers=publishers,
        )

    def proto_counts(self) -> tuple[int, int]:
        """(participants, publishers) now in the room."""
        return len(self.participants), sum(1 for p in self.participants.values() if p.is_publisher)

    def ref_proto(self) -> models.Room:
        """The room as track webhooks carry it: sid and name only."""
        return models.Room(sid=self.sid, name=self.name)

    def agents(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.is_agent]


@dataclass(eq=False)
class Worker:
    """A registered worker, connected over ``/agent`` or simulated in-process."""

    id: str
    agent_name: str = ""
    namespace: str = ""
    job_type: int = agent.JobType.JT_ROOM
    version: str = ""
    permissions: models.ParticipantPermission = field(default_factory=models.ParticipantPermission)
    status: int = agent.WorkerStatus.WS_AVAILABLE
    load: float = 0.0
    job_count: int = 0
    draining: bool = False
    simulated: bool = False
    # The API key the worker authenticated with: it signs the agent tokens of its jobs.
    api_key: str = ""
    registered_at: float = field(default_factory=time.time)
    running_jobs: dict[str, Job] = field(default_factory=dict)
    pending: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    jobs_assigned: int = 0
    closed: bool = False
    # Send a ServerMessage to the worker (queues it on the socket, or hands it to the
    # simulated worker).
    send: Callable[[agent.ServerMessage], None] = lambda msg: None
    # Close the worker's connection.
    close: Callable[[], None] = lambda: None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent_name": self.agent_name,
            "namespace": self.namespace,
            "version": self.version,
            "status": agent.WorkerStatus.Name(self.status),
            "load": round(self.load, 4),
            "job_count": self.job_count,
            "draining": self.draining,
            "simulated": self.simulated,
            "running_jobs": list(self.running_jobs),
            "jobs_assigned": self.jobs_assigned,
        }
