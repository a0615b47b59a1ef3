"""agent-worker: acceptance latency under a burst, jobs lost, private memory per job process.

A real ``agent-worker`` process (capacity 50, 8 idle processes) against the LiveKit emulator
and the Realtime stand-in receives 50 simultaneous job requests (50 CreateDispatch calls at
once). Acceptance latency is request received → answer sent, as the worker measures it
(``/stats`` keeps the exact values; the histogram only has buckets). Memory is per active
job process: USS and PSS (private), beside RSS, which counts the forkserver's shared pages
in every process.

The agents join their rooms over WebRTC, which libwebrtc will not do on loopback: everything
runs inside a network namespace the benchmark makes (root needed, as for the WebRTC tests),
with an embedded Redis started there (the host's is not reachable from inside).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from statistics import mean, median
from typing import Any

import psutil
from livekit import api

from agent_worker.realtime_standin import StandinConfig, running_standin
from agent_worker.testing import dispatch, running_worker
from agentline.ids import new_id
from agentline.redis_conn import EmbeddedRedis
from bench.common import summarize_ms, target, write_results
from livekit_emulator.netns import NetNamespace, skip_reason
from livekit_emulator.testing import running_emulator

JOBS = 50
IDLE_PROCESSES = 8
# 50 WebRTC joins at once load the emulator's Python media stack on 2 cores for ~30 s; with
# the default 20 s some joins time out. Acceptance and memory are what this measures.
JOIN_TIMEOUT_S = 60
KEY, SECRET = "devkey", "agent-worker-bench-secret-0123456789ab"


def _memory(pids: list[int]) -> dict[str, Any]:
    uss, pss, rss = [], [], []
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        uss.append(info.uss / 2**20)
        pss.append(getattr(info, "pss", 0.0) / 2**20)
        rss.append(info.rss / 2**20)

    def stats(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        return {"median": round(median(values), 1), "mean": round(mean(values), 1),
                "max": round(max(values), 1)}  # fmt: skip

    return {"processes": len(uss), "uss_mb": stats(uss), "pss_mb": stats(pss),
            "rss_mb": stats(rss)}  # fmt: skip


def _idle_pids(worker_pid: int, job_pids: list[int]) -> list[int]:
    """Warm job processes without a job: children of the forkserver that run nothing."""
    busy = set(job_pids)
    pids = []
    for child in psutil.Process(worker_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.pid not in busy and child.ppid() != worker_pid:
                pids.append(child.pid)
    return pids


async def _burst(redis_url: str, host: str) -> dict[str, Any]:
    namespace = new_id("bench")
    async with (
        running_emulator(keys={KEY: SECRET}, host=host) as emu,
        running_standin(StandinConfig(pace=1.0)) as standin,
        running_worker(emu.ws_url, KEY, SECRET, redis_url=redis_url, namespace=namespace,
                       openai_base_url=standin.url, max_jobs=JOBS,
                       idle_processes=IDLE_PROCESSES, join_timeout_seconds=JOIN_TIMEOUT_S,
                       ready_within=180,
                       extra_env={"LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO")}) as worker,
    ):  # fmt: skip
        lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
        try:
            ids = [f"dsp_bench_{i}" for i in range(JOBS)]
            started = time.perf_counter()
            await asyncio.gather(*(dispatch(lk, f"bench-room-{i}", d) for i, d in enumerate(ids)))

            def kinds(evs: list[Any], kind: str) -> set[str]:
                return {e.dispatch_id for e in evs if e.kind.value == kind}

            try:
                events = await worker.wait_events(
                    lambda evs: (
                        len(kinds(evs, "joined") | kinds(evs, "failed")) >= JOBS
                        or (
                            len(kinds(evs, "accepted") | kinds(evs, "rejected")) >= JOBS
                            and time.perf_counter() - started > 60
                        )
                    ),
                    within=120,
                )
            except AssertionError:
                events = await worker.events()
            all_joined_s = time.perf_counter() - started
            _, stats = await worker.get("/stats")
            await asyncio.sleep(1.0)  # let the jobs settle before measuring memory
            _, stats_now = await worker.get("/stats")
            memory = _memory(stats_now["job_pids"])
            memory["idle_process"] = _memory(_idle_pids(worker.proc.pid, stats_now["job_pids"]))
            for i in range(JOBS):
                await lk.room.delete_room(api.DeleteRoomRequest(room=f"bench-room-{i}"))
        finally:
            await lk.aclose()
        await worker.stop(within=60)

    accepted = kinds(events, "accepted")
    joined = kinds(events, "joined")
    latencies = [float(x) for x in stats["acceptance_seconds"]]
    acceptance = summarize_ms(latencies)
    return {
        "jobs_requested": JOBS,
        "capacity": JOBS,
        "idle_processes": IDLE_PROCESSES,
        "join_timeout_s": JOIN_TIMEOUT_S,
        "requests_seen_by_worker": len(kinds(events, "request_received")),
        "accepted": len(accepted),
        "rejected": len(kinds(events, "rejected")),
        "joined": len(joined),
        "failed": len(kinds(events, "failed")),
        "failures": dict(
            Counter(f"{e.stage}: {e.error[:90]}" for e in events if e.kind.value == "failed")
        ),
        "jobs_lost": JOBS - len(accepted),
        "acceptance_latency": acceptance,
        "acceptance_p99_target": target(acceptance["p99_ms"], 20.0),
        "no_job_lost_target": target(JOBS - len(accepted), 0),
        "seconds_to_all_joined": round(all_joined_s, 2),
        "memory_per_active_job": memory,
    }


async def run() -> dict[str, Any]:
    reason = skip_reason()
    if reason:
        figures: dict[str, Any] = {"skipped": reason}
        write_results("agent_worker", figures)
        return figures
    ns = NetNamespace.create(prefix="agl-bench")
    try:
        with ns.entered():
            embedded = EmbeddedRedis()
            url = await embedded.start()
            try:
                figures = await _burst(url, ns.server_ip)
            finally:
                await embedded.stop()
    finally:
        ns.delete()
    figures["redis"] = "embedded valkey, inside the benchmark's network namespace"
    write_results("agent_worker", figures)
    return figures


if __name__ == "__main__":
    asyncio.run(run())
