"""Unit tests of the worker's parts that need no LiveKit server."""

from __future__ import annotations

import asyncio
import json
import os
from types import SimpleNamespace
from typing import Any

import pytest
from livekit.agents import AgentServer
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from agent_worker.capacity import OVERRIDDEN_INTERNALS, CapacityAgentServer, SlotLedger
from agent_worker.dispatch_metadata import parse_dispatch_metadata
from agent_worker.job_reports import JobReport, JobReportKind, JobReportReceiver, JobReportSender
from agent_worker.jobs import WorkerJobs
from agent_worker.metrics import METRIC_NAMES, WorkerMetrics
from agent_worker.reporting import Heartbeat, RedisEventSink
from agentline.keys import Keys
from agentline.registry import WorkerRegistry
from agentline.schema import WorkerEvent, WorkerEventKind, WorkerInfo


class ListSink:
    def __init__(self) -> None:
        self.events: list[WorkerEvent] = []

    def publish(self, event: WorkerEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind.value for e in self.events]


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def test_agent_server_internals_we_override_still_exist() -> None:
    for name in OVERRIDDEN_INTERNALS:
        assert callable(getattr(AgentServer, name, None)), name


def test_slot_ledger_counts_pending_and_running() -> None:
    ledger = SlotLedger(2)
    running: set[str] = set()
    ledger.bind_running(lambda: running)
    assert ledger.try_reserve("a") and ledger.try_reserve("b")
    assert not ledger.try_reserve("c")
    assert ledger.load == 1.0
    ledger.release("a")
    running = {"a"}  # "a" now runs in a process
    assert ledger.in_use == 2 and not ledger.try_reserve("c")
    ledger.finish("a")  # it reported its end; its process is still tearing down
    assert ledger.in_use == 1 and ledger.load == 0.5
    ledger.forget_gone(running)
    assert ledger.finished == {"a"}
    running = set()
    ledger.forget_gone(running)
    assert ledger.finished == set() and ledger.in_use == 1
    with pytest.raises(ValueError):
        SlotLedger(0)


def test_capacity_server_reports_full_exactly_at_capacity() -> None:
    ledger = SlotLedger(3)
    server = CapacityAgentServer(ledger, ws_url="ws://x", api_key="k", api_secret="s")
    assert server._is_available()  # every request reaches the handler
    for job in ("a", "b"):
        ledger.try_reserve(job)
    assert server._get_effective_load() == pytest.approx(2 / 3)
    ledger.try_reserve("c")
    assert server._get_effective_load() == 1.0  # >= load_threshold 1.0: FULL


def test_dispatch_metadata_parsing() -> None:
    raw = json.dumps({"dispatch_id": "dsp_1", "metadata": {"lang": "fr"},
                      "trace": {"traceparent": "00-ab-cd-01"}})  # fmt: skip
    info = parse_dispatch_metadata(raw)
    assert info.dispatch_id == "dsp_1"
    assert json.loads(info.caller_metadata) == {"lang": "fr"}
    assert info.traceparent == "00-ab-cd-01"
    legacy = parse_dispatch_metadata(json.dumps({"dispatch_id": "d2", "traceparent": "00-x"}))
    assert legacy.traceparent == "00-x"
    assert parse_dispatch_metadata("not json").caller_metadata == "not json"
    assert parse_dispatch_metadata("").dispatch_id == ""
    assert parse_dispatch_metadata("[1, 2]").dispatch_id == ""


async def test_job_reports_travel_over_the_socket() -> None:
    got: list[JobReport] = []
    receiver = JobReportReceiver(got.append)
    await receiver.start()
    sender = JobReportSender(receiver.path)
    try:
        assert sender.send(JobReport(kind=JobReportKind.JOINED, job_id="j1", seconds=0.25))
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got[0].kind is JobReportKind.JOINED and got[0].seconds == 0.25
        assert got[0].pid > 0 and got[0].at_ms > 0
    finally:
        sender.close()
        receiver.close()
    assert not JobReportSender(receiver.path).send(JobReport(kind="ended", job_id="x"))


def _jobs(capacity: int = 1, draining: bool = False) -> tuple[WorkerJobs, ListSink, set[str]]:
    running: set[str] = set()
    ledger = SlotLedger(capacity)
    ledger.bind_running(lambda: running)
    sink = ListSink()
    jobs = WorkerJobs(worker_id="aw_1", agent_name="travel-assistant", identity="agent-x",
                      display_name="Agent", ledger=ledger, metrics=WorkerMetrics(), sink=sink,
                      draining=lambda: draining, running_job_ids=lambda: set(running))  # fmt: skip
    return jobs, sink, running


class FakeRequest:
    """The slice of livekit.agents.JobRequest the handler uses."""

    def __init__(self, job_id: str, metadata: str, accept_error: Exception | None = None) -> None:
        self.id = job_id
        self.job = SimpleNamespace(id=job_id, metadata=metadata)
        self.room = SimpleNamespace(name=f"room-{job_id}")
        self.accepted: dict[str, Any] | None = None
        self.rejected: bool | None = None
        self._accept_error = accept_error

    async def accept(self, **kwargs: Any) -> None:
        self.accepted = kwargs
        if self._accept_error:
            raise self._accept_error

    async def reject(self, *, terminate: bool = True) -> None:
        self.rejected = terminate


async def test_request_handler_accepts_within_capacity_and_rejects_beyond() -> None:
    jobs, sink, _ = _jobs(capacity=1)
    meta = json.dumps({"dispatch_id": "dsp_a"})
    held = asyncio.Event()

    class SlowAccept(FakeRequest):
        async def accept(self, **kwargs: Any) -> None:
            self.accepted = kwargs
            await held.wait()  # still waiting for the assignment

    first = SlowAccept("j1", meta)
    task = asyncio.create_task(jobs.on_request(first))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    second = FakeRequest("j2", json.dumps({"dispatch_id": "dsp_b"}))
    await jobs.on_request(second)  # type: ignore[arg-type]
    assert second.rejected is False  # terminate=False: LiveKit may try another worker
    held.set()
    await task
    assert first.accepted == {"identity": "agent-x", "name": "Agent",
                              "attributes": {"agentline.dispatch_id": "dsp_a"}}  # fmt: skip
    assert sink.kinds() == ["request_received", "accepted", "request_received", "rejected"]
    assert sink.events[3].reason == "at_capacity" and sink.events[3].dispatch_id == "dsp_b"
    assert sample(jobs.metrics, "agent_worker_job_requests_total") == 2
    assert sample(jobs.metrics, "agent_worker_jobs_rejected_total", reason="at_capacity") == 1


async def test_draining_rejects_and_assignment_failure_is_reported() -> None:
    jobs, sink, _ = _jobs(capacity=2, draining=True)
    req = FakeRequest("j1", "")
    await jobs.on_request(req)  # type: ignore[arg-type]
    assert sink.events[-1].reason == "draining"
    jobs2, sink2, _ = _jobs(capacity=2)
    await jobs2.on_request(FakeRequest("j2", "", accept_error=TimeoutError("no assignment")))  # type: ignore[arg-type]
    assert sink2.kinds()[-1] == "failed" and sink2.events[-1].stage == "assignment"
    assert jobs2.ledger.in_use == 0
    jobs2.check_processes(0.0)
    assert not jobs2.jobs  # nothing left behind


def test_job_reports_become_metrics_and_events() -> None:
    jobs, sink, _ = _jobs()
    base = {"job_id": "j1", "dispatch_id": "dsp_1", "room": "r"}
    jobs.on_report(
        JobReport(kind=JobReportKind.JOINED, seconds=0.4, participant_sid="PA_1", **base)
    )
    jobs.on_report(JobReport(kind=JobReportKind.AUDIO_PUBLISHED, seconds=0.5, **base))
    jobs.on_report(
        JobReport(kind=JobReportKind.FAILED, stage="model", error="invalid_api_key", **base)
    )
    jobs.on_report(
        JobReport(kind=JobReportKind.ENDED, reason="late", **base)
    )  # after failed: ignored
    assert sink.kinds() == ["joined", "audio_published", "failed"]
    assert all(e.dispatch_id == "dsp_1" and e.worker_id == "aw_1" for e in sink.events)
    m = jobs.metrics
    assert sample(m, "agent_worker_room_join_seconds_count") == 1
    assert sample(m, "agent_worker_audio_publish_seconds_sum") == pytest.approx(0.5)
    assert sample(m, "agent_worker_job_failures_total", stage="model") == 1


async def test_a_job_end_frees_its_slot_and_livekit_hears_before_the_dispatcher() -> None:
    jobs, sink, running = _jobs(capacity=1)
    await jobs.on_request(FakeRequest("j1", json.dumps({"dispatch_id": "dsp_1"})))  # type: ignore[arg-type]
    running.add("j1")  # its process runs the job
    assert jobs.ledger.load == 1.0
    order: list[str] = []

    async def announce() -> None:
        order.append(f"status load={jobs.ledger.load}, events={sink.kinds()[-1]}")

    jobs.announce_capacity = announce
    jobs.on_report(JobReport(kind=JobReportKind.ENDED, job_id="j1", dispatch_id="dsp_1"))
    assert jobs.ledger.in_use == 0  # though livekit-agents still lists its process
    await jobs.aclose()
    assert order == ["status load=0.0, events=accepted"]  # the status went out first
    assert sink.kinds()[-1] == "ended"

    async def broken() -> None:
        raise ConnectionError("socket closed")

    jobs.announce_capacity = broken
    jobs.on_report(JobReport(kind=JobReportKind.FAILED, job_id="j2", dispatch_id="d2",
                             stage="model", error="x"))  # fmt: skip
    await jobs.aclose()
    assert sink.kinds()[-1] == "failed"  # reported all the same


def test_a_process_that_dies_silently_is_a_failed_job() -> None:
    jobs, sink, running = _jobs()
    jobs.on_report(JobReport(kind=JobReportKind.JOINED, job_id="j1", dispatch_id="d", seconds=0.1))
    running.add("j1")
    jobs.check_processes(10.0)
    running.clear()
    jobs.check_processes(11.0)
    assert sink.kinds() == ["joined"]  # within the grace period its report may still come
    jobs.check_processes(13.5)
    assert sink.kinds() == ["joined", "failed"] and sink.events[-1].stage == "process"


def test_metrics_export_every_documented_name() -> None:
    metrics = WorkerMetrics()
    text = metrics.render().decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    for name in METRIC_NAMES:
        assert name.removesuffix("_total") in names, name


async def test_events_and_heartbeats_reach_redis(redis_client: Redis, keys: Keys) -> None:
    sink = RedisEventSink(redis_client, keys)
    sink.start()
    sink.publish(WorkerEvent(kind=WorkerEventKind.ACCEPTED, worker_id="aw_1",
                             agent_name="travel-assistant", job_id="j1", dispatch_id="dsp_1"))  # fmt: skip
    await sink.flush(5)
    await sink.aclose()
    entries = await redis_client.xrange(keys.worker_events)
    assert len(entries) == 1 and entries[0][1]["dispatch_id"] == "dsp_1"
    registry = WorkerRegistry(redis_client, keys, ttl_seconds=3)
    info: WorkerInfo | None = WorkerInfo(worker_id="aw_1", agent_name="travel-assistant",
                                         capacity=4, active_jobs=1, load=0.25)  # fmt: skip
    beat = Heartbeat(registry, lambda: info, period=0.05)
    beat.start()
    await asyncio.sleep(0.2)
    live = await registry.live_workers()
    assert [w.capacity for w in live] == [4] and beat.beats >= 2
    info = None  # lost the LiveKit registration: leave the registry
    await asyncio.sleep(0.2)
    assert await registry.live_workers() == []
    await beat.aclose()


async def test_a_lone_event_is_written_at_once_and_a_burst_in_one_batch(
    redis_client: Redis, keys: Keys
) -> None:
    batches: list[int] = []

    class CountingSink(RedisEventSink):
        async def _write(self, events: list[WorkerEvent]) -> None:
            batches.append(len(events))  # when the write starts
            await super()._write(events)

    def event(n: int) -> WorkerEvent:
        return WorkerEvent(kind=WorkerEventKind.ACCEPTED, worker_id="aw_1",
                           agent_name="travel-assistant", job_id=f"j{n}", dispatch_id=f"dsp_{n}")  # fmt: skip

    sink = CountingSink(redis_client, keys)
    sink.start()
    await asyncio.sleep(0)
    sink.publish(event(0))
    for _ in range(3):  # a few turns of the event loop, no waiting window
        await asyncio.sleep(0)
    assert batches == [1]
    await sink.flush(5)
    for n in range(1, 51):  # answered in one turn
        sink.publish(event(n))
    await sink.flush(5)
    await sink.aclose()
    assert batches == [1, 50]
    assert len(await redis_client.xrange(keys.worker_events)) == 51


def test_end_reason_of_a_job_closed_by_the_worker_names_why() -> None:
    running: set[str] = set()
    ledger = SlotLedger(1)
    sink = ListSink()
    jobs = WorkerJobs(worker_id="w", agent_name="a", identity="i", display_name="n",
                      ledger=ledger, metrics=WorkerMetrics(), sink=sink, draining=lambda: False,
                      running_job_ids=lambda: running,
                      terminated_by_livekit=lambda job_id: job_id == "j1")  # fmt: skip
    closed = "parent process shutdown"
    jobs.on_report(JobReport(kind=JobReportKind.ENDED, job_id="j1", reason=closed))
    jobs.on_report(JobReport(kind=JobReportKind.ENDED, job_id="j2", reason="caller left"))
    assert [e.reason for e in sink.events] == ["terminated by LiveKit", "caller left"]


async def test_the_request_span_continues_the_dispatch_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from agent_worker import jobs as jobs_module

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(jobs_module, "_tracer", provider.get_tracer("test"))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    meta = json.dumps({"dispatch_id": "dsp_t",
                       "trace": {"traceparent": f"00-{trace_id}-{parent_id}-01"}})  # fmt: skip
    jobs, _, _ = _jobs()
    await jobs.on_request(FakeRequest("j1", meta))  # type: ignore[arg-type]
    (span,) = exporter.get_finished_spans()
    assert span.name == "agent_worker.job_request"
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent_id
    assert span.attributes["agentline.answer"] == "accepted"


def test_job_processes_join_a_handed_down_cpu_group(tmp_path: Any, monkeypatch: Any) -> None:
    """On a one-box run the job processes (the agents' media) take the stand-ins' CPU share
    (agentline.cpu_share); the worker process keeps its own. Elsewhere nothing happens."""
    from agent_worker.app import WorkerApp
    from agent_worker.job import prepare_job_process
    from agentline.cpu_share import SHARED_GROUP_ENV
    from agentline.settings import AgentWorkerSettings

    server = WorkerApp(AgentWorkerSettings())._build_server(None)  # type: ignore[arg-type]
    assert server.setup_fnc is prepare_job_process
    # A stand-in for the group: a directory where the process writes its pid.
    monkeypatch.setenv(SHARED_GROUP_ENV, str(tmp_path))
    prepare_job_process(None)  # type: ignore[arg-type]
    assert (tmp_path / "agent-jobs" / "cgroup.procs").read_text() == str(os.getpid())
    monkeypatch.delenv(SHARED_GROUP_ENV)
    (tmp_path / "agent-jobs" / "cgroup.procs").unlink()
    prepare_job_process(None)  # type: ignore[arg-type]
    assert not (tmp_path / "agent-jobs" / "cgroup.procs").exists()
