"""The job entrypoint, run in a job process: join, talk, report, and always end the process.

A job ends its process in every case (room end, caller leaving, cancel, error): every
terminal path calls ``ctx.shutdown``, because an entrypoint that returns without it leaves
its process alive and blocks the worker's drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession, JobContext, JobProcess, room_io
from livekit.agents.voice.events import CloseEvent, CloseReason

from agent_worker.assistant import TravelAssistant, WarmRealtimeModel, build_model
from agent_worker.config import JobConfig, job_config
from agent_worker.dispatch_metadata import parse_dispatch_metadata
from agent_worker.job_reports import JobReport, JobReportKind, JobReportSender, truncate_error
from agent_worker.job_tracing import JobSpan
from agentline.cpu_share import join_handed_down_group

log = logging.getLogger("agent_worker.job")
_CALLER_KINDS = (
    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
    rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
    rtc.ParticipantKind.PARTICIPANT_KIND_CONNECTOR,
)


def prepare_job_process(_process: JobProcess) -> None:
    """Run once in each job process before its first job. On a one-box run (`make dev`, the
    end-to-end benchmark) the job processes do what the agents' own nodes would, the media, so
    they join the stand-ins' CPU group (agentline.cpu_share); the worker process that accepts
    jobs and writes their reports keeps the control plane's share. Elsewhere: nothing."""
    join_handed_down_group("agent-jobs")


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"


class JobRun:
    def __init__(
        self,
        ctx: JobContext,
        config: JobConfig,
        sender: JobReportSender,
        span: JobSpan | None = None,
    ) -> None:
        self.ctx = ctx
        self.config = config
        self.sender = sender
        self.dispatch = parse_dispatch_metadata(ctx.job.metadata)
        info = ctx._info  # RunningJobInfo: the worker stamps the assignment time there
        self.assigned_at = info.assigned_at or time.time()
        self.agent_identity = info.accept_arguments.identity
        self.terminal = False
        self.outcome = ("ended", "")
        self.trace = span or JobSpan(None, None)
        self.audio_reported = False
        self.model: WarmRealtimeModel | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # reporting -------------------------------------------------------------------------

    def _report(self, kind: JobReportKind, **fields: object) -> None:
        self.trace.event(
            kind.value, **{k: v for k, v in fields.items() if isinstance(v, str | float)}
        )
        self.sender.send(
            JobReport(
                kind=kind,
                job_id=self.ctx.job.id,
                dispatch_id=self.dispatch.dispatch_id,
                room=self.ctx.job.room.name,
                agent_identity=self.agent_identity,
                **fields,  # type: ignore[arg-type]
            )
        )

    def _since_assignment(self) -> float:
        return max(0.0, time.time() - self.assigned_at)

    def fail(self, stage: str, error: str) -> None:
        if not self.terminal:
            self.terminal = True
            log.error("job failed at %s: %s", stage, error)
            self.outcome = ("failed", f"{stage}: {error}")
            self._report(JobReportKind.FAILED, stage=stage, error=truncate_error(error))
        self.ctx.shutdown(reason=f"failed at {stage}")

    def end(self, reason: str) -> None:
        if not self.terminal:
            self.terminal = True
            self.outcome = ("ended", reason)
            self._report(JobReportKind.ENDED, reason=reason)
        self.ctx.shutdown(reason=reason)

    # room and session events -----------------------------------------------------------

    def _on_local_track_published(
        self, publication: rtc.LocalTrackPublication, track: rtc.Track
    ) -> None:
        if publication.kind == rtc.TrackKind.KIND_AUDIO and not self.audio_reported:
            self.audio_reported = True
            self._report(
                JobReportKind.AUDIO_PUBLISHED,
                seconds=self._since_assignment(),
                participant_sid=self.ctx.room.local_participant.sid,
            )

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        callers = [p for p in self.ctx.room.remote_participants.values() if p.kind in _CALLER_KINDS]
        if participant.kind in _CALLER_KINDS and not callers:
            self.end("caller left")

    def _on_session_close(self, event: CloseEvent) -> None:
        if event.error is not None:
            stage = "model" if event.error.type == "realtime_model_error" else "session"
            error = event.error.error
            detail = describe_exception(error) if isinstance(error, BaseException) else str(error)
            self.fail(stage, detail)
        elif event.reason == CloseReason.PARTICIPANT_DISCONNECTED:
            self.end("caller left")
        elif event.reason == CloseReason.TASK_COMPLETED:
            self.end("conversation completed")
        else:
            # JOB_SHUTDOWN / USER_INITIATED: the job is shutting down (the framework closes
            # the session first); the shutdown callback reports it with the shutdown's reason
            self.ctx.shutdown(reason="session closed")

    async def on_shutdown(self, reason: str) -> None:
        if not self.terminal:
            if reason == "job crashed":
                self.fail("process", "the job entrypoint raised (see the worker log)")
            else:
                self.terminal = True
                self.outcome = ("ended", reason or "shutdown")
                self._report(JobReportKind.ENDED, reason=reason or "shutdown")
        for task in self._tasks:
            task.cancel()
        if self.model is not None:
            await self.model.discard_warm_session()
        self.sender.close()
        await self.trace.end(*self.outcome)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_model(self, model: WarmRealtimeModel) -> None:
        self.fail("model", await model.fatal_error())

    def _has_caller(self) -> bool:
        return any(p.kind in _CALLER_KINDS for p in self.ctx.room.remote_participants.values())

    async def _wait_for_caller(self) -> None:
        deadline = time.monotonic() + self.config.caller_wait_s
        while not self._has_caller():
            if time.monotonic() >= deadline:
                self.end(f"no caller joined within {self.config.caller_wait_s:g} s")
                return
            await asyncio.sleep(0.5)

    # the job ---------------------------------------------------------------------------

    async def run(self) -> None:
        self.trace.start(
            self.dispatch.trace,
            {"agentline.dispatch_id": self.dispatch.dispatch_id, "livekit.job_id": self.ctx.job.id,
             "livekit.room": self.ctx.job.room.name, "agentline.agent_name": self.config.agent_name},
        )  # fmt: skip
        self.model = model = build_model(self.config)
        model.start_warm_session()
        room = self.ctx.room
        room.on("local_track_published", self._on_local_track_published)
        room.on("participant_disconnected", self._on_participant_disconnected)

        try:
            await asyncio.wait_for(self.ctx.connect(), self.config.join_timeout_s)
        except Exception as exc:
            # a model that refused us is the cause to name (a bad key fails every job)
            verdict = await model.verdict(self.config.model_verdict_timeout_s)
            await model.discard_warm_session()
            if verdict is not None and not verdict.ok:
                self.fail("model", verdict.error)
            else:
                self.fail("join", describe_exception(exc))
            return
        self._report(
            JobReportKind.JOINED,
            seconds=self._since_assignment(),
            participant_sid=room.local_participant.sid,
        )

        verdict = await model.verdict(0)
        if verdict is not None and not verdict.ok:
            self.fail("model", verdict.error)
            return
        self._spawn(self._watch_model(model), "watch-model")
        self._spawn(self._wait_for_caller(), "wait-for-caller")
        session: AgentSession = AgentSession(llm=model)
        session.on("close", self._on_session_close)
        await session.start(
            agent=TravelAssistant(),
            room=room,
            room_options=room_io.RoomOptions(close_on_disconnect=True),
        )


async def entrypoint(ctx: JobContext) -> None:
    config = job_config()
    run = JobRun(ctx, config, JobReportSender(config.telemetry_socket), JobSpan.from_environment())
    ctx.log_context_fields = {
        "dispatch_id": run.dispatch.dispatch_id,
        "traceparent": run.dispatch.traceparent,
    }
    ctx.add_shutdown_callback(run.on_shutdown)
    try:
        await run.run()
    except asyncio.CancelledError:
        run.end("cancelled")
        raise
    except Exception as exc:
        log.exception("job session failed")
        run.fail("session", describe_exception(exc))
