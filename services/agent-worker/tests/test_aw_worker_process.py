"""A real agent-worker process against the LiveKit emulator, the Realtime stand-in and Redis,
inside a network namespace (the agents join over WebRTC; see conftest.py). No caller joins:
the agents join and wait, which is all these tests need (test_aw_worker_media.py has the
caller who hears the agent)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aw_stack import NamespacedStack
from livekit import api

from agent_worker.realtime_standin import RunningStandin, StandinConfig, running_standin
from agent_worker.testing import dispatch
from agentline.registry import WorkerRegistry
from agentline.schema import WorkerEvent, WorkerInfo

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def kinds_for(events: list[WorkerEvent], dispatch_id: str) -> list[str]:
    return [e.kind.value for e in events if e.dispatch_id == dispatch_id]


def count(events: list[WorkerEvent], kind: str) -> int:
    return sum(1 for e in events if e.kind.value == kind)


async def _live_workers(
    registry: WorkerRegistry,
    settled: Callable[[list[WorkerInfo]], bool] = bool,
) -> list[WorkerInfo]:
    """The registry's live workers once ``settled`` holds (by default: the worker's entry is
    there), or the last read: its heartbeat (every 0.5 s here, kept 1.5 s) carries a change a
    beat later, and can come late while its job processes load the machine."""
    workers: list[WorkerInfo] = []
    for _ in range(50):
        workers = await registry.live_workers()
        if settled(workers):
            return workers
        await asyncio.sleep(0.1)
    return workers


async def test_capacity_events_metrics_registry_and_drain(
    ns_stack: NamespacedStack, standin: RunningStandin, start_worker: Any
) -> None:
    lk_api = ns_stack.lk_api
    async with start_worker(openai_base_url=standin.url, max_jobs=2,
                            idle_processes=2, drain_timeout_seconds=20) as worker:  # fmt: skip
        status, ready = await worker.get("/readyz")
        assert status == 200 and ready["registered"] is True
        assert any("agent_name='travel-assistant'" in line for line in worker.output)

        # three at once for two slots: two accepted, one rejected with a reason
        ids = ["dsp_a", "dsp_b", "dsp_c"]
        await asyncio.gather(*(dispatch(lk_api, f"room-{d}", d) for d in ids))
        events = await worker.wait_events(
            lambda evs: count(evs, "rejected") == 1 and count(evs, "joined") == 2
        )
        accepted = {e.dispatch_id for e in events if e.kind.value == "accepted"}
        rejected = [e for e in events if e.kind.value == "rejected"]
        assert len(accepted) == 2 and rejected[0].dispatch_id not in accepted
        assert rejected[0].reason == "at_capacity"
        for d in accepted:
            assert kinds_for(events, d) == ["request_received", "accepted", "joined"]
        for e in events:
            assert e.dispatch_id in ids and e.job_id and e.worker_id.startswith("aw_")
            assert e.agent_name == "travel-assistant"
        joined = [e for e in events if e.kind.value == "joined"]
        assert all(e.participant_sid and e.agent_identity == "agent-attar-travel-assistant"
                   for e in joined)  # fmt: skip

        m = await worker.metrics()
        assert m[("agent_worker_job_requests_total", ())] == 3
        assert m[("agent_worker_jobs_accepted_total", ())] == 2
        assert m[("agent_worker_jobs_rejected_total", (("reason", "at_capacity"),))] == 1
        assert m[("agent_worker_job_acceptance_seconds_count", ())] == 3
        # recorded in the job processes, exported by the worker
        assert m[("agent_worker_room_join_seconds_count", ())] == 2
        assert m[("agent_worker_room_join_seconds_sum", ())] > 0
        assert m[("agent_worker_active_jobs", ())] == 2
        assert m[("agent_worker_capacity", ())] == 2
        assert m[("agent_worker_registered", (("agent_name", "travel-assistant"),))] == 1
        assert m[("agent_worker_job_failures_total", (("stage", "join"),))] == 0

        registry = WorkerRegistry(ns_stack.redis, ns_stack.keys)
        (info,) = await _live_workers(registry, lambda ws: bool(ws) and ws[0].active_jobs == 2)
        assert (info.agent_name, info.capacity, info.active_jobs) == ("travel-assistant", 2, 2)
        assert info.load == 1.0 and not info.draining and info.livekit_worker_id.startswith("AW_")

        # SIGTERM: not ready at once, registry says draining, jobs finish, then exit 0
        worker.proc.send_signal(15)
        for _ in range(50):
            status, body = await worker.get("/readyz")
            if status == 503:
                break
            await asyncio.sleep(0.05)
        assert status == 503 and body["draining"] is True
        await asyncio.sleep(1.0)
        assert worker.proc.returncode is None  # still finishing its jobs
        (info,) = await _live_workers(registry, lambda ws: bool(ws) and ws[0].draining)
        assert info.draining
        for d in accepted:
            await lk_api.room.delete_room(api.DeleteRoomRequest(room=f"room-{d}"))
        assert await asyncio.wait_for(worker.proc.wait(), 20) == 0
        events = await worker.events()
        for d in accepted:
            assert kinds_for(events, d)[-1] == "ended", worker.log_tail()
        reasons = {e.reason for e in events if e.kind.value == "ended"}
        assert reasons <= {"room disconnected", "terminated by LiveKit"}, reasons
        assert await registry.live_workers() == []


async def test_burst_up_to_capacity_loses_no_job(
    ns_stack: NamespacedStack, standin: RunningStandin, start_worker: Any
) -> None:
    lk_api, capacity = ns_stack.lk_api, 6
    async with start_worker(openai_base_url=standin.url, max_jobs=capacity,
                            idle_processes=3) as worker:  # fmt: skip
        ids = [f"dsp_burst_{i}" for i in range(capacity)]
        await asyncio.gather(*(dispatch(lk_api, f"room-{d}", d) for d in ids))
        events = await worker.wait_events(lambda evs: count(evs, "joined") == capacity, 25)
        assert count(events, "accepted") == capacity
        assert count(events, "rejected") == 0 and count(events, "failed") == 0
        assert {e.dispatch_id for e in events if e.kind.value == "joined"} == set(ids)
        _, stats = await worker.get("/stats")
        assert stats["in_use"] == capacity and len(stats["acceptance_seconds"]) == capacity

        # the /agent socket drops: the worker registers again and keeps its jobs
        first_id = stats["livekit_worker_id"]
        assert await ns_stack.emu.admin.close_worker_sockets("travel-assistant") >= 1
        for _ in range(100):
            _, stats = await worker.get("/stats")
            if stats["livekit_worker_id"] != first_id and (await worker.get("/readyz"))[0] == 200:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"did not register again:\n{worker.log_tail()}")
        assert stats["in_use"] == capacity
        assert (await worker.metrics())[
            ("agent_worker_registered", (("agent_name", "travel-assistant"),))
        ] == 1


async def test_wrong_key_then_unreachable_model_fail_the_job_with_the_reason(
    ns_stack: NamespacedStack, start_worker: Any
) -> None:
    lk_api = ns_stack.lk_api
    standin_cm = running_standin(StandinConfig(pace=0.0))
    standin = await standin_cm.__aenter__()
    async with start_worker(openai_base_url=standin.url,
                            openai_api_key="sk-not-the-right-key-000") as worker:  # fmt: skip
        # 1. the model refuses the key: the job fails at "model" with the API's reason
        await dispatch(lk_api, "room-key", "dsp_key")
        events = await worker.wait_events(lambda evs: count(evs, "failed") == 1)
        (failed,) = [e for e in events if e.kind.value == "failed"]
        assert failed.dispatch_id == "dsp_key" and failed.stage == "model"
        assert "invalid_api_key" in failed.error and "Incorrect API key" in failed.error
        assert "ended" not in kinds_for(events, "dsp_key")
        m = await worker.metrics()
        assert m[("agent_worker_job_failures_total", (("stage", "model"),))] == 1
        # the job ended its process: the slot is free again
        for _ in range(100):
            if (await worker.metrics())[("agent_worker_active_jobs", ())] == 0:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the failed job kept its slot")

        # 2. the model endpoint is gone: connection refused, also a "model" failure
        await standin_cm.__aexit__(None, None, None)
        await dispatch(lk_api, "room-down", "dsp_down")
        events = await worker.wait_events(lambda evs: count(evs, "failed") == 2, 30)
        failed = next(e for e in events if e.kind.value == "failed" and e.dispatch_id == "dsp_down")
        assert failed.stage == "model" and "connect" in failed.error.lower(), failed.error
        m = await worker.metrics()
        assert m[("agent_worker_job_failures_total", (("stage", "model"),))] == 2
        assert await worker.stop() == 0
