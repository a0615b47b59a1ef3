"""Simulated workers: in-process agent workers that speak the worker protocol.

A simulated worker registers like a real one (an ``AW_`` id, the same message handling in the
engine), answers availability within its capacity, and for each assigned job makes the agent
participant join the room after ``join_delay_s`` and publish a microphone track after
``publish_delay_s`` more: participant and track records and their webhooks, no media. The job
ends when the agent leaves (JobTermination, RemoveParticipant, room closed).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from livekit.protocol import agent, models

from . import ids
from .auth import unverified_claims
from .config import SimulatedWorkerSpec
from .model import Participant, Room, Track, Worker
from .rooms import participant_from_claims

if TYPE_CHECKING:
    from .server import Emulator

logger = logging.getLogger("livekit_emulator.simulated")

# livekit-agents waits this long for the assignment after accepting (ASSIGNMENT_TIMEOUT).
ASSIGNMENT_TIMEOUT_S = 7.5
VERSION = "simulated"


@dataclass(eq=False)
class SimJob:
    job_id: str
    token: str
    participant: Participant | None = None
    room: Room | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class SimulatedWorker:
    def __init__(self, emu: Emulator, spec: SimulatedWorkerSpec) -> None:
        self._emu = emu
        self.spec = spec
        self.worker: Worker | None = None
        self.jobs: dict[str, SimJob] = {}
        self._reserved: dict[str, asyncio.TimerHandle] = {}
        self._retries = 0
        self._reconnect: asyncio.TimerHandle | None = None
        self.removed = False

    @property
    def agent_name(self) -> str:
        return self.spec.agent_name

    @property
    def load(self) -> float:
        return (len(self.jobs) + len(self._reserved)) / max(self.spec.capacity, 1)

    # -- connection -------------------------------------------------------------------------

    def connect(self) -> None:
        self._reconnect = None
        if self.removed:
            return
        if self._emu.faults.refusing():
            # As livekit-agents retries: at once, then every 2, 4, ... 10 s.
            delay = min(self._retries * 2, 10)
            self._retries += 1
            self._reconnect = asyncio.get_running_loop().call_later(delay, self.connect)
            return
        self._retries = 0
        api_key = next(iter(self._emu.config.keys))
        self.worker = Worker(
            id=ids.guid(ids.WORKER),
            simulated=True,
            api_key=api_key,
            send=self._on_server_message,
            close=self._on_socket_closed,
        )
        register = agent.RegisterWorkerRequest(
            type=agent.JobType.JT_ROOM,
            agent_name=self.spec.agent_name,
            version=VERSION,
            allowed_permissions=models.ParticipantPermission(
                can_subscribe=True,
                can_publish=True,
                can_publish_data=True,
                can_update_metadata=True,
                agent=True,
            ),
        )
        self._emu.engine.handle_worker_message(self.worker, agent.WorkerMessage(register=register))

    def _on_socket_closed(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            self._emu.engine.worker_closed(worker)
        for timer in self._reserved.values():
            timer.cancel()
        self._reserved.clear()
        if not self.removed and self._reconnect is None:
            self._reconnect = asyncio.get_running_loop().call_later(0, self.connect)

    def remove(self, agents_leave: bool = True) -> None:
        """Stop for good: the connection closes; with ``agents_leave`` its agents leave too."""
        self.removed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None
        self._on_socket_closed()
        if agents_leave:
            for sim in list(self.jobs.values()):
                self._leave(sim)
        for sim in list(self.jobs.values()):
            self._finish(sim, report=False)

    # -- protocol ---------------------------------------------------------------------------

    def _on_server_message(self, msg: agent.ServerMessage) -> None:
        # Delivered on the next loop iteration, as a frame would be.
        asyncio.get_running_loop().call_soon(self._handle, self.worker, msg)

    def _reply(self, msg: agent.WorkerMessage) -> None:
        if self.worker is not None and not self.worker.closed:
            self._emu.engine.handle_worker_message(self.worker, msg)

    def _report_status(self) -> None:
        full = len(self.jobs) + len(self._reserved) >= self.spec.capacity
        self._reply(
            agent.WorkerMessage(
                update_worker=agent.UpdateWorkerStatus(
                    status=agent.WorkerStatus.WS_FULL if full else agent.WorkerStatus.WS_AVAILABLE,
                    load=self.load,
                    job_count=len(self.jobs),
                )
            )
        )

    def _handle(self, worker: Worker | None, msg: agent.ServerMessage) -> None:
        if worker is None or worker is not self.worker:
            return  # sent to a connection that has closed since
        which = msg.WhichOneof("message")
        if which == "register":
            self._report_status()
        elif which == "availability":
            self._on_availability(msg.availability.job)
        elif which == "assignment":
            self._on_assignment(msg.assignment)
        elif which == "termination":
            sim = self.jobs.get(msg.termination.job_id)
            if sim is not None:
                self._leave(sim)
                self._finish(sim)

    def _on_availability(self, job: agent.Job) -> None:
        accept = self.spec.accept and len(self.jobs) + len(self._reserved) < self.spec.capacity
        answer = agent.AvailabilityResponse(job_id=job.id, available=accept)
        if accept:
            answer.participant_identity = f"agent-{job.id}"
            answer.participant_attributes["lk.agent.name"] = self.spec.agent_name
            loop = asyncio.get_running_loop()
            self._reserved[job.id] = loop.call_later(ASSIGNMENT_TIMEOUT_S, self._release, job.id)
        self._reply(agent.WorkerMessage(availability=answer))
        if accept:
            self._report_status()

    def _release(self, job_id: str) -> None:
        if self._reserved.pop(job_id, None) is not None:
            self._report_status()

    def _on_assignment(self, assignment: agent.JobAssignment) -> None:
        timer = self._reserved.pop(assignment.job.id, None)
        if timer is None:
            return  # not ours any more (we gave up waiting)
        timer.cancel()
        job = assignment.job
        sim = SimJob(job_id=job.id, token=assignment.token)
        self.jobs[job.id] = sim
        self._reply(
            agent.WorkerMessage(
                update_job=agent.UpdateJobStatus(job_id=job.id, status=agent.JobStatus.JS_RUNNING)
            )
        )
        self._report_status()
        room = self._emu.rooms.get(job.room.name)
        if room is None or room.closed:
            self._finish(sim, status=agent.JobStatus.JS_FAILED, error="room not found")
            return
        sim.room = room
        room.on_close.append(lambda _room: self._finish(sim))
        if self.spec.join:
            delay = self._delay(self.spec.join_delay_s, self._emu.timing.agent_join_delay)
            self._later(sim, delay, self._join, sim)

    def _delay(self, configured: float | None, profile: Any) -> float:
        return float(configured) if configured is not None else float(profile())

    def _later(self, sim: SimJob, delay: float, fn: Any, *args: Any) -> None:
        sim.timers.append(asyncio.get_running_loop().call_later(delay, fn, *args))

    def _join(self, sim: SimJob) -> None:
        room = sim.room
        if room is None or room.closed or sim.job_id not in self.jobs:
            return
        claims = unverified_claims(sim.token)
        participant = participant_from_claims(claims, origin="simulated")
        participant.job_id = sim.job_id
        participant.on_leave.append(lambda _p: self._finish(sim))
        sim.participant = participant
        self._emu.rooms.join(room, participant)
        if self.spec.publish_audio:
            delay = self._delay(self.spec.publish_delay_s, self._emu.timing.track_publish_delay)
            self._later(sim, delay, self._publish, sim)

    def _publish(self, sim: SimJob) -> None:
        room, participant = sim.room, sim.participant
        if (
            room is None
            or participant is None
            or room.participants.get(participant.identity) is not participant
        ):
            return
        track = Track(sid=ids.track_sid(), name="agent-audio")
        self._emu.rooms.publish(room, participant, track)

    def _leave(self, sim: SimJob) -> None:
        room, participant = sim.room, sim.participant
        if room is not None and participant is not None:
            self._emu.rooms.leave(room, participant)

    def _finish(
        self,
        sim: SimJob,
        status: agent.JobStatus = agent.JobStatus.JS_SUCCESS,
        error: str = "",
        report: bool = True,
    ) -> None:
        if self.jobs.pop(sim.job_id, None) is None:
            return
        for timer in sim.timers:
            timer.cancel()
        if report:
            self._reply(
                agent.WorkerMessage(
                    update_job=agent.UpdateJobStatus(job_id=sim.job_id, status=status, error=error)
                )
            )
            self._report_status()

    def summary(self) -> dict[str, Any]:
        return {
            "agent_name": self.spec.agent_name,
            "capacity": self.spec.capacity,
            "worker_id": self.worker.id if self.worker else None,
            "jobs": list(self.jobs),
            "accept": self.spec.accept,
            "join": self.spec.join,
            "publish_audio": self.spec.publish_audio,
        }
