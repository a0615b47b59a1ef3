"""The worker's main process: LiveKit registration, capacity, reporting, HTTP and drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from contextlib import AsyncExitStack
from importlib.metadata import version

from livekit.agents import AgentServer
from livekit.agents import __version__ as agents_version

from agent_worker.capacity import CapacityAgentServer, SlotLedger
from agent_worker.config import JobConfig, publish_job_config
from agent_worker.health import HealthServer, HealthState
from agent_worker.job import entrypoint, prepare_job_process
from agent_worker.job_reports import JobReportReceiver
from agent_worker.jobs import WorkerJobs
from agent_worker.metrics import WorkerMetrics
from agent_worker.model_endpoint import resolve_model_endpoint
from agent_worker.reporting import EventSink, Heartbeat, RedisEventSink
from agentline.heap import freeze_startup_objects
from agentline.ids import new_id
from agentline.keys import Keys
from agentline.redis_conn import make_client
from agentline.registry import WorkerRegistry
from agentline.schema import WorkerInfo
from agentline.settings import AgentWorkerSettings
from agentline.telemetry import setup_tracing

log = logging.getLogger("agent_worker")
VERSION = f"agent-worker/{version('agentline-agent-worker')} livekit-agents/{agents_version}"


class WorkerApp:
    def __init__(self, settings: AgentWorkerSettings, *, sink: EventSink | None = None) -> None:
        self.settings = settings
        self.worker_id = new_id("aw")
        self.metrics = WorkerMetrics(agent_name=settings.agent_name)
        self.ledger = SlotLedger(settings.max_jobs)
        self.draining = False
        self.livekit_worker_id = ""
        self._sink = sink
        self._stop = asyncio.Event()
        self.server: CapacityAgentServer | None = None
        self.health: HealthServer | None = None
        self.jobs: WorkerJobs | None = None
        self.exit_code = 0

    # state -----------------------------------------------------------------------------

    @property
    def registered(self) -> bool:
        return self.server is not None and self.server.livekit_connected

    def health_state(self) -> HealthState:
        failed = self.server is not None and getattr(self.server, "_connection_failed", False)
        return HealthState(
            alive=not failed,
            registered=self.registered,
            draining=self.draining,
            detail="failed to connect to LiveKit" if failed else "",
        )

    def worker_info(self) -> WorkerInfo | None:
        if not self.registered:
            return None
        return WorkerInfo(
            worker_id=self.worker_id,
            agent_name=self.settings.agent_name,
            capacity=self.ledger.capacity,
            active_jobs=self.ledger.in_use,
            load=round(self.ledger.load, 4),
            draining=self.draining,
            livekit_worker_id=self.livekit_worker_id,
            version=VERSION,
            host=socket.gethostname(),
        )

    def stats(self) -> dict[str, object]:
        return {
            "worker_id": self.worker_id,
            "livekit_worker_id": self.livekit_worker_id,
            "agent_name": self.settings.agent_name,
            "capacity": self.ledger.capacity,
            "in_use": self.ledger.in_use,
            "draining": self.draining,
            "job_pids": self._job_pids(),
            "acceptance_seconds": list(self.jobs.recent_acceptance_s) if self.jobs else [],
        }

    def _job_pids(self) -> list[int]:
        if self.server is None or self.server._closed:
            return []
        pids = []
        for proc in self.server._proc_pool.processes:
            pid = getattr(proc, "pid", None)
            if proc.running_job is not None and pid:
                pids.append(int(pid))
        return pids

    def _terminated_by_livekit(self, job_id: str) -> bool:
        return self.server is not None and job_id in self.server.terminated_by_livekit

    def _running_job_ids(self) -> set[str]:
        if self.server is None or self.server._closed:
            return set()
        return {info.job.id for info in self.server.active_jobs}

    def _on_connection_change(self, connected: bool) -> None:
        self.metrics.registered.set(1 if connected else 0)
        if not connected and not self.draining:
            log.warning("lost the LiveKit connection; not ready until registered again")

    def _on_registered(self, worker_id: str, server_info: object) -> None:
        self.livekit_worker_id = worker_id
        log.info(
            "registered with LiveKit as agent_name=%r at %s (LiveKit worker id %s, capacity %d)",
            self.settings.agent_name, self.settings.livekit_ws_url, worker_id,
            self.ledger.capacity,
        )  # fmt: skip

    def request_stop(self) -> None:
        self._stop.set()

    # lifecycle -------------------------------------------------------------------------

    def _build_server(self, receiver: JobReportReceiver) -> CapacityAgentServer:
        s = self.settings
        server = CapacityAgentServer(
            self.ledger,
            ws_url=s.livekit_ws_url,
            api_key=s.livekit_api_key,
            api_secret=s.livekit_api_secret.get_secret_value(),
            num_idle_processes=s.idle_processes,
            drain_timeout=math.ceil(s.drain_timeout_seconds),
            port=0,  # livekit-agents' own health server; ours is on settings.port
            preload_modules=["agent_worker.job"],
            initialize_process_timeout=20.0,
            setup_fnc=prepare_job_process,
        )
        server.rtc_session(entrypoint, agent_name=s.agent_name, on_request=self._on_request)
        server.on("worker_registered", self._on_registered)
        return server

    async def _on_request(self, request: object) -> None:
        assert self.jobs is not None
        await self.jobs.on_request(request)  # type: ignore[arg-type]

    async def run(self) -> int:
        """Serve until :meth:`request_stop` (SIGTERM), then drain and exit."""
        async with AsyncExitStack() as stack:
            s = self.settings
            setup_tracing("agent-worker")  # exports over OTLP only when configured
            endpoint = await resolve_model_endpoint(s, stack)
            sink, heartbeat = await self._start_reporting(stack)
            self.jobs = WorkerJobs(
                worker_id=self.worker_id, agent_name=s.agent_name, identity=s.agent_identity,
                display_name=s.agent_display_name, ledger=self.ledger, metrics=self.metrics,
                sink=sink, draining=lambda: self.draining,
                running_job_ids=self._running_job_ids,
                terminated_by_livekit=self._terminated_by_livekit,
            )  # fmt: skip
            receiver = JobReportReceiver(self.jobs.on_report)
            await receiver.start()
            stack.callback(receiver.close)
            publish_job_config(
                JobConfig(
                    agent_name=s.agent_name, agent_identity=s.agent_identity,
                    agent_display_name=s.agent_display_name, worker_id=self.worker_id,
                    telemetry_socket=receiver.path, openai_api_key=endpoint.api_key,
                    openai_base_url=endpoint.base_url, using_standin=endpoint.using_standin,
                    voice=s.voice, temperature=s.temperature,
                    join_timeout_s=s.join_timeout_seconds, caller_wait_s=s.caller_wait_seconds,
                )
            )  # fmt: skip
            self.metrics.capacity.set(self.ledger.capacity)
            self.metrics.registered.set(0)
            self.health = HealthServer(
                s.host, s.port, self.health_state, self.metrics.render, self.stats
            )
            try:
                await self.health.start()
            except OSError as bind_error:
                message = f"agent-worker: cannot serve HTTP on {s.host}:{s.port}: {bind_error}"
                raise SystemExit(message) from None
            stack.push_async_callback(self.health.aclose)

            # The Realtime model detects turns server-side: the local VAD and end-of-turn
            # weights (~250 MB, seconds of start-up) that livekit-agents would preload into
            # the forkserver are never used here.
            os.environ.setdefault("LIVEKIT_AGENTS_PRELOAD_LOCAL_INFERENCE", "0")
            self.server = server = self._build_server(receiver)
            server.on_answer_sent = self.jobs.on_answer_sent
            self.jobs.announce_capacity = server.announce_status
            server.on_connection_change = self._on_connection_change
            log.info(
                "starting agent-worker %s: agent_name=%r, LiveKit %s, model: %s, capacity %d, "
                "%d idle processes, HTTP :%d",
                self.worker_id, s.agent_name, s.livekit_ws_url, endpoint.describe(),
                s.max_jobs, s.idle_processes, self.health.port,
            )  # fmt: skip
            freeze_startup_objects()  # a full collection would pause request answers
            run_task = asyncio.create_task(server.run(devmode=False), name="agent-server")
            self.jobs.start()
            heartbeat.start()
            stop_task = asyncio.create_task(self._stop.wait())
            await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if run_task.done():
                stop_task.cancel()
                failure = run_task.exception()
                log.error("the LiveKit worker stopped: %s", failure)
                self.exit_code = 1
            else:
                await self._drain(server, heartbeat)
            await self._shutdown(server, run_task)
            await self.jobs.aclose()
        return self.exit_code

    async def _start_reporting(self, stack: AsyncExitStack) -> tuple[EventSink, Heartbeat]:
        s = self.settings
        redis = make_client(s.redis_url)
        stack.push_async_callback(redis.aclose)
        keys = Keys(namespace=s.redis_namespace)
        sink = self._sink
        if sink is None:
            redis_sink = RedisEventSink(redis, keys)
            redis_sink.start()
            stack.push_async_callback(redis_sink.aclose)
            sink = redis_sink
        heartbeat = Heartbeat(
            WorkerRegistry(redis, keys, ttl_seconds=3 * s.heartbeat_seconds),
            self.worker_info,
            s.heartbeat_seconds,
        )
        stack.push_async_callback(heartbeat.aclose)
        self.heartbeat = heartbeat
        return sink, heartbeat

    async def _drain(self, server: AgentServer, heartbeat: Heartbeat) -> None:
        self.draining = True
        active = self.ledger.in_use
        log.info("SIGTERM: draining (%d active jobs, up to %.0f s)", active,
                 self.settings.drain_timeout_seconds)  # fmt: skip
        with contextlib.suppress(Exception):
            await heartbeat.beat()  # tell the dispatchers at once
        try:
            await server.drain(timeout=math.ceil(self.settings.drain_timeout_seconds) or None)
            log.info("drained: all jobs finished")
        except TimeoutError:
            log.warning("drain timed out with %d jobs still running; closing them",
                        self.ledger.in_use)  # fmt: skip

    async def _shutdown(self, server: AgentServer, run_task: asyncio.Task[None]) -> None:
        with contextlib.suppress(Exception):
            await server.aclose()
        self.metrics.registered.set(0)
        if not run_task.done():
            run_task.cancel()
        with contextlib.suppress(BaseException):
            await run_task
        await asyncio.sleep(0.2)  # last reports from closing job processes
        if self.jobs is not None:
            self.jobs.finalize()
