"""The main process's view of jobs: answering requests by capacity, turning job reports
into metrics and worker events, and noticing job processes that died without a word."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from livekit.agents import JobRequest

from agent_worker.capacity import SlotLedger
from agent_worker.dispatch_metadata import parse_dispatch_metadata
from agent_worker.job_reports import JobReport, JobReportKind, truncate_error
from agent_worker.metrics import WorkerMetrics
from agent_worker.reporting import EventSink
from agentline.schema import WorkerEvent, WorkerEventKind
from agentline.telemetry import extract_context, tracer

log = logging.getLogger("agent_worker.jobs")
_tracer = tracer("agent_worker")
DISPATCH_ID_ATTRIBUTE = "agentline.dispatch_id"
_REPORT_GRACE_S = 2.0  # a dead process's last report may still be in the socket
_ANNOUNCE_TIMEOUT_S = 1.0
PARENT_SHUTDOWN = "parent process shutdown"  # livekit-agents' reason for a closed process


@dataclass
class TrackedJob:
    job_id: str
    dispatch_id: str
    room: str
    seen_running: bool = False
    gone_since: float | None = None
    terminal: bool = False


class WorkerJobs:
    def __init__(
        self,
        *,
        worker_id: str,
        agent_name: str,
        identity: str,
        display_name: str,
        ledger: SlotLedger,
        metrics: WorkerMetrics,
        sink: EventSink,
        draining: Callable[[], bool],
        running_job_ids: Callable[[], set[str]],
        terminated_by_livekit: Callable[[str], bool] = lambda _: False,
    ) -> None:
        self._terminated_by_livekit = terminated_by_livekit
        self.worker_id = worker_id
        self.agent_name = agent_name
        self.identity = identity
        self.display_name = display_name
        self.ledger = ledger
        self.metrics = metrics
        self.sink = sink
        self._draining = draining
        self._running_job_ids = running_job_ids
        self.jobs: dict[str, TrackedJob] = {}
        # the latest acceptance latencies, exact (the histogram only has buckets)
        self.recent_acceptance_s: collections.deque[float] = collections.deque(maxlen=1000)
        self._watch_task: asyncio.Task[None] | None = None
        # Sends the worker's status to LiveKit now (set once the AgentServer exists).
        self.announce_capacity: Callable[[], Awaitable[None]] | None = None
        self._announcing: set[asyncio.Task[None]] = set()

    def _event(self, kind: WorkerEventKind, job: TrackedJob, **fields: str) -> None:
        self.sink.publish(
            WorkerEvent(
                kind=kind,
                worker_id=self.worker_id,
                agent_name=self.agent_name,
                job_id=job.job_id,
                dispatch_id=job.dispatch_id,
                room=job.room,
                at_ms=time.time_ns() // 1_000_000,
                **fields,
            )
        )

    def update_gauges(self) -> None:
        self.metrics.active_jobs.set(self.ledger.in_use)

    # job requests ----------------------------------------------------------------------

    async def on_request(self, request: JobRequest) -> None:
        dispatch = parse_dispatch_metadata(request.job.metadata)
        job = TrackedJob(request.id, dispatch.dispatch_id, request.room.name)
        # one trace per dispatch: this span continues the dispatcher's (from the metadata)
        with _tracer.start_as_current_span(
            "agent_worker.job_request",
            context=extract_context(dispatch.trace) if dispatch.trace else None,
            attributes={"agentline.dispatch_id": job.dispatch_id, "livekit.job_id": job.job_id,
                        "livekit.room": job.room, "agentline.agent_name": self.agent_name},
        ) as span:  # fmt: skip
            answer = await self._answer(request, job, dispatch.dispatch_id)
            span.set_attribute("agentline.answer", answer)

    async def _answer(self, request: JobRequest, job: TrackedJob, dispatch_id: str) -> str:
        self.metrics.job_requests.inc()
        self._event(WorkerEventKind.REQUEST_RECEIVED, job)
        reason = ""
        if self._draining():
            reason = "draining"
        elif not self.ledger.try_reserve(request.id):
            reason = "at_capacity"
        if reason:
            self.metrics.jobs_rejected.labels(reason=reason).inc()
            self._event(WorkerEventKind.REJECTED, job, reason=reason)
            log.info(
                "rejected job %s (%s)", request.id, reason, extra={"dispatch_id": job.dispatch_id}
            )
            # terminate=False: LiveKit may offer the job to another worker
            await request.reject(terminate=False)
            return f"rejected: {reason}"
        self.jobs[request.id] = job
        self.metrics.jobs_accepted.inc()
        self._event(WorkerEventKind.ACCEPTED, job, agent_identity=self.identity)
        self.update_gauges()
        attributes = {DISPATCH_ID_ATTRIBUTE: dispatch_id} if dispatch_id else {}
        try:
            await request.accept(
                identity=self.identity, name=self.display_name, attributes=attributes
            )
        except Exception as exc:  # no assignment in time, or no process to run it
            self._fail(job, "assignment", f"{type(exc).__name__}: {exc}")
            return "accepted, never assigned"
        finally:
            self.ledger.release(request.id)
            self.update_gauges()
        return "accepted"

    def on_answer_sent(self, job_id: str, accepted: bool, seconds: float) -> None:
        self.metrics.acceptance_seconds.observe(seconds)
        self.recent_acceptance_s.append(seconds)

    # reports from job processes --------------------------------------------------------

    def on_report(self, report: JobReport) -> None:
        job = self.jobs.get(report.job_id) or TrackedJob(
            report.job_id, report.dispatch_id, report.room
        )
        self.jobs.setdefault(report.job_id, job)
        if report.kind is JobReportKind.JOINED:
            if report.seconds is not None:
                self.metrics.room_join_seconds.observe(report.seconds)
            self._event(WorkerEventKind.JOINED, job, agent_identity=report.agent_identity,
                        participant_sid=report.participant_sid)  # fmt: skip
        elif report.kind is JobReportKind.AUDIO_PUBLISHED:
            if report.seconds is not None:
                self.metrics.audio_publish_seconds.observe(report.seconds)
            self._event(WorkerEventKind.AUDIO_PUBLISHED, job, agent_identity=report.agent_identity,
                        participant_sid=report.participant_sid)  # fmt: skip
        elif report.kind is JobReportKind.FAILED:
            self._fail(job, report.stage, report.error)
        elif report.kind is JobReportKind.ENDED and not job.terminal:
            self._job_over(job, WorkerEventKind.ENDED, {"reason": self._end_reason(report)})

    def _end_reason(self, report: JobReport) -> str:
        # a job process closed by its worker is told no reason; the worker knows it
        if report.reason != PARENT_SHUTDOWN:
            return report.reason
        if self._terminated_by_livekit(report.job_id):
            return "terminated by LiveKit"
        return "worker shut down" if self._draining() else report.reason

    def _fail(self, job: TrackedJob, stage: str, error: str) -> None:
        if job.terminal:
            return
        self.metrics.job_failures.labels(stage=stage).inc()
        fields = {"stage": stage, "error": truncate_error(error)}
        self._job_over(job, WorkerEventKind.FAILED, fields)

    def _job_over(self, job: TrackedJob, kind: WorkerEventKind, fields: dict[str, str]) -> None:
        """The job's slot is free: LiveKit hears it first (the worker's status), then the
        dispatcher (this event, which hands the slot to the next dispatch at once). In the
        other order LiveKit could still see the worker FULL and drop that next job."""
        job.terminal = True
        self.ledger.finish(job.job_id)
        self.update_gauges()
        announce = self.announce_capacity
        if announce is None:
            self._event(kind, job, **fields)
            return

        async def announce_then_report() -> None:
            try:
                async with asyncio.timeout(_ANNOUNCE_TIMEOUT_S):
                    await announce()
            except Exception as exc:  # the event matters more than the early status
                log.warning("could not send the worker status to LiveKit: %r", exc)
            self._event(kind, job, **fields)

        task = asyncio.create_task(announce_then_report(), name=f"job-over-{job.job_id}")
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    # processes that vanish -------------------------------------------------------------

    def check_processes(self, now: float) -> None:
        running = self._running_job_ids()
        self.ledger.forget_gone(running)
        for job_id, job in list(self.jobs.items()):
            if job_id in running:
                job.seen_running, job.gone_since = True, None
                continue
            if job_id in self.ledger.pending:
                continue
            if job.terminal:
                del self.jobs[job_id]
            elif not job.seen_running:
                continue
            elif job.gone_since is None:
                job.gone_since = now
            elif now - job.gone_since >= _REPORT_GRACE_S:
                self._fail(job, "process", "the job process exited without reporting an outcome")
                del self.jobs[job_id]
        self.update_gauges()

    def finalize(self) -> None:
        """At exit: a job still open has lost its process with the worker."""
        self.announce_capacity = None  # LiveKit is gone; report at once
        for job in self.jobs.values():
            if not job.terminal and job.seen_running:
                self._fail(job, "process", "the worker exited before the job reported its end")
        self.jobs.clear()
        self.update_gauges()

    def start(self, period: float = 0.5) -> None:
        async def _watch() -> None:
            while True:
                await asyncio.sleep(period)
                self.check_processes(time.monotonic())

        self._watch_task = asyncio.create_task(_watch(), name="job-process-watch")

    async def aclose(self) -> None:
        if self._announcing:  # job ends still being reported
            await asyncio.wait(self._announcing, timeout=_ANNOUNCE_TIMEOUT_S + 1)
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
