"""Agent dispatch: dispatches, job requests, worker selection and the worker protocol.

Semantics of livekit-server 1.13.5 (see ../shared/livekit-golden/ and docs/emulator.md):

* a job is offered only to workers registered with the dispatch's ``agent_name`` whose status
  is AVAILABLE; among them the one with running jobs and the highest load, else the first;
  a worker that answers ``available: false`` passes the job to the next one;
* with no such worker the job is dropped at once ("no worker is available"), never retried;
* a worker that does not answer within ``availability_timeout`` (10 s) loses the job;
* an accepted job is listed as JS_RUNNING and never updated in ListDispatch;
* when an agent participant leaves, its worker gets a JobTermination.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from livekit.protocol import agent, agent_dispatch, models

from . import ids
from .auth import build_agent_token
from .config import AGENT_PROTOCOL, SERVER_PROTOCOL, SERVER_VERSION
from .model import AGENT_NAME_ATTRIBUTE, Dispatch, Job, Participant, Room, Worker, now_ns

if TYPE_CHECKING:
    from .server import Emulator

logger = logging.getLogger("livekit_emulator.dispatch")

RUNNING = agent.JobStatus.JS_RUNNING
SUCCESS = agent.JobStatus.JS_SUCCESS
FAILED = agent.JobStatus.JS_FAILED
AVAILABLE = agent.WorkerStatus.WS_AVAILABLE
JT_ROOM = agent.JobType.JT_ROOM

NO_WORKER = "no worker is available"
AVAILABILITY_TIMEOUT = "agent worker availability timeout"
WORKER_CLOSED = "worker closed"
DEFAULT_UNSERVED = "no response from servers"

_TIMEOUT = object()
_CLOSED = object()


class DispatchEngine:
    def __init__(self, emu: Emulator) -> None:
        self._emu = emu
        self._state = emu.state
        self._tasks: set[asyncio.Task[None]] = set()
        self.server_info = models.ServerInfo(
            version=SERVER_VERSION,
            protocol=SERVER_PROTOCOL,
            node_id=ids.guid(ids.NODE),
            agent_protocol=AGENT_PROTOCOL,
        )

    # -- dispatches -------------------------------------------------------------------------

    def create_dispatch(
        self,
        room: Room,
        agent_name: str,
        *,
        metadata: str = "",
        attributes: dict[str, str] | None = None,
        deployment: str = "",
        restart_policy: int = agent_dispatch.JobRestartPolicy.JRP_ON_FAILURE,
    ) -> Dispatch:
        dispatch = Dispatch(
            id=ids.guid(ids.DISPATCH),
            agent_name=agent_name,
            room_name=room.name,
            metadata=metadata,
            attributes=dict(attributes or {}),
            deployment=deployment,
            restart_policy=restart_policy,
        )
        room.dispatches[dispatch.id] = dispatch
        self._spawn(self._job_request(room, dispatch))
        return dispatch

    def delete_dispatch(self, room: Room, dispatch_id: str) -> Dispatch | None:
        dispatch = room.dispatches.pop(dispatch_id, None)
        if dispatch is not None:
            for job in dispatch.jobs:
                self.terminate_job(job, agent_left=False)
        return dispatch

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- job requests -----------------------------------------------------------------------

    @staticmethod
    def _eligible(w: Worker) -> bool:
        # Room jobs of the default namespace: the real server keys its workers by
        # (agent_name, namespace, job type).
        return w.status == AVAILABLE and not w.closed and not w.namespace and w.job_type == JT_ROOM

    def has_available_worker(self, agent_name: str) -> bool:
        return any(
            self._eligible(w) for w in self._state.workers_by_name.get(agent_name, {}).values()
        )

    def select_worker(self, agent_name: str, attempted: set[str]) -> Worker | None:
        """The real server's choice: among the AVAILABLE workers of that agent name not yet
        tried, the one with running jobs and the highest load, else the first registered."""
        selected: Worker | None = None
        max_load = 0.0
        for w in self._state.workers_by_name.get(agent_name, {}).values():
            if w.id in attempted or not self._eligible(w):
                continue
            if w.running_jobs and w.load > max_load:
                selected, max_load = w, w.load
            elif selected is None:
                selected = w
        return selected

    async def _job_request(self, room: Room, dispatch: Dispatch) -> None:
        loop = asyncio.get_running_loop()
        served = await self._emu.timing.pace_job_request(
            dispatch.agent_name,
            lambda: self.has_available_worker(dispatch.agent_name),
            loop.time(),
        )
        job = Job(
            id=ids.guid(ids.JOB),
            dispatch_id=dispatch.id,
            agent_name=dispatch.agent_name,
            metadata=dispatch.metadata,
            room_name=room.name,
            room=room,
            room_counts=room.proto_counts(),
            room_metadata=room.metadata,
        )
        if not served:
            self._drop(job, DEFAULT_UNSERVED)
            return
        if room.closed or dispatch.id not in room.dispatches:
            self._drop(job, "room closed" if room.closed else "dispatch deleted")
            return
        attempted: set[str] = set()
        while True:
            worker = self.select_worker(dispatch.agent_name, attempted)
            if worker is None:
                self._drop(job, NO_WORKER)
                return
            attempted.add(worker.id)
            outcome = await self._offer(worker, job, room, dispatch)
            if outcome != "not_available":
                return

    def _drop(self, job: Job, reason: str) -> None:
        job.dropped_reason = reason
        job.status = FAILED
        job.error = reason
        self._state.dropped_jobs.append(job)
        # Every room's default dispatch is dropped when nobody serves "": not worth INFO.
        logger.log(
            logging.INFO if job.agent_name else logging.DEBUG,
            "job request failed: %s (room %r, agent_name %r, job %s)",
            reason,
            job.room_name,
            job.agent_name,
            job.id,
        )

    async def _offer(self, worker: Worker, job: Job, room: Room, dispatch: Dispatch) -> str:
        loop = asyncio.get_running_loop()
        started = now_ns()
        state = agent.JobState(
            status=RUNNING, started_at=started, updated_at=started, worker_id=worker.id
        )
        future: asyncio.Future[Any] = loop.create_future()
        worker.pending[job.id] = future
        worker.send(
            agent.ServerMessage(availability=agent.AvailabilityRequest(job=job.proto(state)))
        )
        timer = loop.call_later(self._emu.config.availability_timeout, _resolve, future, _TIMEOUT)
        try:
            answer = await future
        finally:
            timer.cancel()
            worker.pending.pop(job.id, None)
        if answer is _TIMEOUT or answer is _CLOSED:
            self._drop(job, AVAILABILITY_TIMEOUT if answer is _TIMEOUT else WORKER_CLOSED)
            return "failed"
        if answer.terminate:
            state.status = SUCCESS
            state.ended_at = started
            job.listed_state, job.status, job.worker_id = state, SUCCESS, worker.id
            self._record_job(room, dispatch, job)
            return "terminated"
        if not answer.available:
            return "not_available"
        identity = answer.participant_identity
        attributes = dict(answer.participant_attributes)
        attributes[AGENT_NAME_ATTRIBUTE] = worker.agent_name
        state.participant_identity = identity
        token = build_agent_token(
            api_key=worker.api_key,
            api_secret=self._emu.config.keys.get(worker.api_key, ""),
            room=room.name,
            identity=identity,
            name=answer.participant_name,
            metadata=answer.participant_metadata,
            attributes=attributes,
            permissions=worker.permissions,
        )
        assignment = agent.JobAssignment(job=job.proto(state), token=token)
        if self._emu.config.assignment_url:
            assignment.url = self._emu.config.assignment_url
        worker.send(agent.ServerMessage(assignment=assignment))
        job.listed_state = state
        job.status = RUNNING
        job.worker_id = worker.id
        job.participant_identity = identity
        job.visible_at = loop.time() + self._emu.timing.listing_delay(worker.jobs_assigned == 0)
        worker.jobs_assigned += 1
        worker.running_jobs[job.id] = job
        room.agent_jobs[identity] = job
        self._record_job(room, dispatch, job)
        return "assigned"

    def _record_job(self, room: Room, dispatch: Dispatch, job: Job) -> None:
        dispatch.jobs.append(job)
        if room.closed:
            self._state.finish_job(job)
        else:
            self._state.jobs[job.id] = job

    # -- job ends ---------------------------------------------------------------------------

    def terminate_job(self, job: Job, *, agent_left: bool) -> None:
        """Send JobTermination to the job's worker (the agent left, or its dispatch was
        deleted)."""
        worker = self._state.workers.get(job.worker_id)
        if worker is None or job.id not in worker.running_jobs:
            return
        worker.send(agent.ServerMessage(termination=agent.JobTermination(job_id=job.id)))
        if agent_left:
            self._end_job(worker, job, FAILED, "agent worker left the room")
        else:
            self._end_job(worker, job, SUCCESS, "")

    def _end_job(self, worker: Worker, job: Job, status: int, error: str) -> None:
        job.status = status
        job.error = error
        job.ended_at_ns = now_ns()
        worker.running_jobs.pop(job.id, None)

    def on_agent_left(self, room: Room, participant: Participant) -> None:
        job = room.agent_jobs.pop(participant.identity, None)
        if job is not None:
            self.terminate_job(job, agent_left=True)

    def on_room_closed(self, room: Room) -> None:
        for dispatch in room.dispatches.values():
            for job in dispatch.jobs:
                self._state.finish_job(job)

    # -- the worker protocol ----------------------------------------------------------------

    def handle_worker_message(self, worker: Worker, msg: agent.WorkerMessage) -> None:
        which = msg.WhichOneof("message")
        if which == "register":
            self._register(worker, msg.register)
        elif which == "availability":
            self._on_availability(worker, msg.availability)
        elif which == "update_job":
            self._on_update_job(worker, msg.update_job)
        elif which == "update_worker":
            self._on_update_worker(worker, msg.update_worker)
        elif which == "ping":
            worker.send(
                agent.ServerMessage(
                    pong=agent.WorkerPong(
                        last_timestamp=msg.ping.timestamp, timestamp=now_ns() // 1_000_000
                    )
                )
            )
        else:
            logger.debug("ignored worker message %s from %s", which, worker.id)

    def _register(self, worker: Worker, req: agent.RegisterWorkerRequest) -> None:
        if worker.id in self._state.workers:
            logger.warning("worker %s registered twice", worker.id)
            return
        worker.agent_name = req.agent_name
        worker.namespace = req.namespace
        worker.job_type = req.type
        worker.version = req.version
        if req.HasField("allowed_permissions"):
            worker.permissions = req.allowed_permissions
        else:
            worker.permissions = models.ParticipantPermission(
                can_subscribe=True,
                can_publish=True,
                can_publish_data=True,
                can_update_metadata=True,
            )
        worker.send(
            agent.ServerMessage(
                register=agent.RegisterWorkerResponse(
                    worker_id=worker.id, server_info=self.server_info
                )
            )
        )
        self._state.add_worker(worker)
        self._emu.timing.note_activity()
        logger.info("worker %s registered (agent_name %r)", worker.id, worker.agent_name)

    def _on_availability(self, worker: Worker, res: agent.AvailabilityResponse) -> None:
        if worker.agent_name in self._state.ignore_availability:
            logger.info("ignoring availability answer of %s for %s (fault)", worker.id, res.job_id)
            return
        future = worker.pending.get(res.job_id)
        if future is None:
            logger.warning("availability answer for unknown job %s", res.job_id)
            return
        _resolve(future, res)

    def _on_update_job(self, worker: Worker, update: agent.UpdateJobStatus) -> None:
        known = worker.running_jobs.get(update.job_id) or self._state.find_job(update.job_id)
        if known is not None:
            known.reported.append(agent.JobStatus.Name(update.status))
        job = worker.running_jobs.get(update.job_id)
        if job is None:
            logger.debug("job update for unknown job %s from %s", update.job_id, worker.id)
            return
        job.status = update.status
        job.error = update.error
        if update.status in (SUCCESS, FAILED):
            self._end_job(worker, job, update.status, update.error)

    def _on_update_worker(self, worker: Worker, update: agent.UpdateWorkerStatus) -> None:
        if update.HasField("status"):
            worker.status = update.status
        worker.load = update.load
        worker.job_count = update.job_count
        worker.draining = update.draining

    def worker_closed(self, worker: Worker) -> None:
        """The worker's connection is gone: it is unregistered, pending offers fail and its
        running jobs are marked failed."""
        if worker.closed:
            return
        worker.closed = True
        self._state.remove_worker(worker)
        for future in list(worker.pending.values()):
            _resolve(future, _CLOSED)
        for job in list(worker.running_jobs.values()):
            self._end_job(worker, job, FAILED, "worker disconnected")
        logger.info("worker %s closed", worker.id)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)
