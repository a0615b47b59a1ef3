"""The job entrypoint's failure paths, in-process with the real model plugin against the
stand-in and a room whose connect fails (the emulator has no fault for that)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from livekit import rtc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agent_worker.config import JobConfig
from agent_worker.job import JobRun
from agent_worker.job_reports import JobReport, JobReportReceiver, JobReportSender
from agent_worker.job_tracing import JobSpan
from agent_worker.realtime_standin import DEFAULT_STANDIN_KEY, RunningStandin


class FailingRoom:
    def __init__(self) -> None:
        self.remote_participants: dict[str, Any] = {}
        self.local_participant = SimpleNamespace(sid="")
        self.handlers: dict[str, Any] = {}

    def on(self, event: str, handler: Any) -> None:
        self.handlers[event] = handler


class FakeJobContext:
    """What JobRun uses of livekit.agents.JobContext, with a connect that fails."""

    def __init__(self, connect_error: Exception) -> None:
        self.room = FailingRoom()
        self.job = SimpleNamespace(
            id="AJ_test", metadata=json.dumps({"dispatch_id": "dsp_job"}),
            room=SimpleNamespace(name="room-x"),
        )  # fmt: skip
        self._info = SimpleNamespace(
            assigned_at=0.0, accept_arguments=SimpleNamespace(identity="agent-x")
        )
        self._connect_error = connect_error
        self.shutdown_reasons: list[str] = []

    async def connect(self) -> None:
        await asyncio.sleep(0.05)
        raise self._connect_error

    def shutdown(self, reason: str = "") -> None:
        self.shutdown_reasons.append(reason)


async def _run_job(
    standin: RunningStandin, api_key: str, span: JobSpan | None = None, metadata: str = ""
) -> tuple[list[JobReport], FakeJobContext]:
    reports: list[JobReport] = []
    receiver = JobReportReceiver(reports.append)
    await receiver.start()
    config = JobConfig(
        agent_name="travel-assistant", agent_identity="agent-x", agent_display_name="A",
        worker_id="aw_t", telemetry_socket=receiver.path, openai_api_key=api_key,
        openai_base_url=standin.url, using_standin=True, model_verdict_timeout_s=5,
    )  # fmt: skip
    ctx = FakeJobContext(rtc.ConnectError("engine: signal failure: ws failure"))
    if metadata:
        ctx.job.metadata = metadata
    run = JobRun(ctx, config, JobReportSender(receiver.path), span)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(run.run(), 15)
        await run.on_shutdown(ctx.shutdown_reasons[0])
        await asyncio.sleep(0.05)
    finally:
        receiver.close()
    return reports, ctx


async def test_a_failed_join_is_a_failed_job_never_a_success(standin: RunningStandin) -> None:
    reports, ctx = await _run_job(standin, DEFAULT_STANDIN_KEY)
    assert [r.kind.value for r in reports] == ["failed"]
    (failed,) = reports
    assert failed.stage == "join" and "ConnectError" in failed.error
    assert failed.dispatch_id == "dsp_job" and failed.job_id == "AJ_test"
    assert ctx.shutdown_reasons == ["failed at join"]  # the process ends


async def test_a_refused_model_key_is_named_even_when_the_join_fails(
    standin: RunningStandin,
) -> None:
    reports, ctx = await _run_job(standin, "sk-wrong-0000000000")
    (failed,) = reports
    assert failed.stage == "model" and "invalid_api_key" in failed.error
    assert ctx.shutdown_reasons == ["failed at model"]


@pytest.mark.parametrize("reason", ["room disconnected", "job crashed"])
async def test_shutdown_without_an_outcome_reports_one(reason: str) -> None:
    reports: list[JobReport] = []
    receiver = JobReportReceiver(reports.append)
    await receiver.start()
    config = JobConfig(
        agent_name="a", agent_identity="i", agent_display_name="n", worker_id="w",
        telemetry_socket=receiver.path, openai_api_key="k", openai_base_url=None,
        using_standin=False,
    )  # fmt: skip
    ctx = FakeJobContext(RuntimeError("unused"))
    run = JobRun(ctx, config, JobReportSender(receiver.path))  # type: ignore[arg-type]
    await run.on_shutdown(reason)
    await asyncio.sleep(0.05)
    receiver.close()
    (report,) = reports
    if reason == "job crashed":
        assert (report.kind.value, report.stage) == ("failed", "process")
    else:
        assert (report.kind.value, report.reason) == ("ended", "room disconnected")


async def test_the_job_span_continues_the_dispatch_trace(standin: RunningStandin) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    meta = json.dumps({"dispatch_id": "dsp_tr",
                       "trace": {"traceparent": f"00-{trace_id}-{parent_id}-01"}})  # fmt: skip
    span = JobSpan(provider.get_tracer("test"), provider)
    await _run_job(standin, DEFAULT_STANDIN_KEY, span, meta)
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "agent_worker.job"
    assert format(finished.context.trace_id, "032x") == trace_id
    assert finished.parent is not None and format(finished.parent.span_id, "016x") == parent_id
    assert [e.name for e in finished.events] == ["failed"]
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.attributes["agentline.dispatch_id"] == "dsp_tr"


async def test_a_job_whose_caller_never_comes_ends_itself() -> None:
    reports: list[JobReport] = []
    receiver = JobReportReceiver(reports.append)
    await receiver.start()
    config = JobConfig(
        agent_name="a", agent_identity="i", agent_display_name="n", worker_id="w",
        telemetry_socket=receiver.path, openai_api_key="k", openai_base_url=None,
        using_standin=False, caller_wait_s=0.3,
    )  # fmt: skip
    ctx = FakeJobContext(RuntimeError("unused"))
    run = JobRun(ctx, config, JobReportSender(receiver.path))  # type: ignore[arg-type]
    await asyncio.wait_for(run._wait_for_caller(), 3)
    await asyncio.sleep(0.05)
    receiver.close()
    (report,) = reports
    assert (report.kind.value, report.reason) == ("ended", "no caller joined within 0.3 s")
    assert ctx.shutdown_reasons == ["no caller joined within 0.3 s"]
