"""The dispatcher against the emulator's simulated workers (zero delays), on real Redis.

Figures: the dispatcher's CPU time per dispatch (its own process counters, so the emulator and
Redis sharing the cores do not blur it), its own added latency p50/p99 at 300 dispatches/s
(time in the dispatcher, LiveKit and Redis calls excluded, from its histogram), the
requested → speaking latency, the sustained rate the whole pipeline holds here, and the split
between two dispatcher processes (each 50 ± 10 %, no dispatch handled twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psutil
from redis.asyncio import Redis

from agentline.ids import new_dispatch_id
from agentline.keys import Keys
from agentline.redis_conn import EmbeddedRedis, delete_namespace, make_client, ping
from agentline.registry import WorkerRegistry
from agentline.schema import DispatchRequest, WorkerInfo
from agentline.store import DispatchStore
from bench import dispatcher_floor
from bench.common import summarize_ms, target, write_results
from bench.http_load import free_port
from dispatcher.testing import (
    DispatcherProcess,
    WebhookBalancer,
    bucket_delta,
    dispatcher_env,
    histogram_buckets,
    histogram_quantile,
    start_dispatcher,
)
from livekit_emulator.admin_client import EmulatorAdmin

AGENT = "travel-assistant"
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
RATE_PER_S = int(os.environ.get("BENCH_DISPATCHER_RATE", "300"))
# A rate this machine's pipeline keeps up with: the dispatcher's intrinsic cost per dispatch.
LIGHT_RATE_PER_S = int(os.environ.get("BENCH_DISPATCHER_LIGHT_RATE", "60"))
STEADY_SECONDS = float(os.environ.get("BENCH_DISPATCHER_SECONDS", "5"))
WARMUP = 300
BURST = int(os.environ.get("BENCH_DISPATCHER_BURST", "2000"))
SPLIT_COUNT = int(os.environ.get("BENCH_DISPATCHER_SPLIT", "1000"))
# Bounded in-flight steps (the recommended setting, docs/operations.md): past its CPU, a
# replica leaves requests queued in the stream (measured as queue wait) instead of slowing
# every step it has started. BENCH_DISPATCHER_IN_FLIGHT=512 measures the default.
DISPATCHER_SETTINGS = {"max_in_flight": int(os.environ.get("BENCH_DISPATCHER_IN_FLIGHT", "64"))}


SETTLED = frozenset({"speaking", "ended", "failed", "cancelled"})


def _hook(port: int) -> str:
    return f"http://127.0.0.1:{port}/webhooks/livekit"


@contextlib.asynccontextmanager
async def _redis() -> AsyncIterator[str]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if await ping(url):
        yield url
        return
    embedded = EmbeddedRedis()
    try:
        yield await embedded.start()
    finally:
        await embedded.stop()


@contextlib.asynccontextmanager
async def _emulator(webhook_urls: list[str], workers: bool = True) -> AsyncIterator[str]:
    port = free_port()
    hooks = [arg for url in webhook_urls for arg in ("--webhook-url", url)]
    simulated = ["--simulated-worker", f"{AGENT}:1000000"] if workers else []
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livekit_emulator.main", "--port", str(port),
        "--keys", f"devkey:{SECRET}", *hooks, *simulated, "--log-level", "WARNING",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    admin = EmulatorAdmin(url)
    try:
        for _ in range(300):
            with contextlib.suppress(Exception):
                await admin.state()
                break
            await asyncio.sleep(0.1)
        yield url
    finally:
        await admin.aclose()
        process.terminate()
        await process.wait()


async def _submit(store: DispatchStore, count: int, rate: float | None, tag: str) -> list[str]:
    """Create dispatches as token-api does, at ``rate`` per second (None: as fast as we can)."""
    ids: list[str] = []
    start = time.perf_counter()

    async def one(i: int) -> None:
        dispatch_id = new_dispatch_id()
        ids.append(dispatch_id)
        await store.create(
            DispatchRequest(
                dispatch_id=dispatch_id,
                room=f"bench-{tag}-{i}",
                agent_name=AGENT,
                requested_at_ms=time.time_ns() // 1_000_000,
            )
        )

    if rate is None:
        for first in range(0, count, 100):
            await asyncio.gather(*(one(i) for i in range(first, min(count, first + 100))))
        return ids
    pending: set[asyncio.Task[None]] = set()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    return ids


async def _wait_speaking(redis: Redis, keys: Keys, ids: list[str], within: float) -> dict[str, dict[str, str]]:  # fmt: skip
    """Every dispatch's record once it settled. The observer reads only each record's state
    until it settles (the whole record once): reading every record every round would load
    the Redis and the cores the measured pipeline shares."""
    deadline = time.monotonic() + within
    records: dict[str, dict[str, str]] = {}
    remaining = list(ids)
    while remaining and time.monotonic() < deadline:
        async with redis.pipeline(transaction=False) as pipe:
            for dispatch_id in remaining:
                pipe.hget(keys.dispatch(dispatch_id), "state")
            states = await pipe.execute()
        settled = [d for d, state in zip(remaining, states, strict=True) if state in SETTLED]
        if settled:
            async with redis.pipeline(transaction=False) as pipe:
                for dispatch_id in settled:
                    pipe.hgetall(keys.dispatch(dispatch_id))
                rows = await pipe.execute()
            records.update(zip(settled, rows, strict=True))
        done = set(settled)
        remaining = [d for d in remaining if d not in done]
        if remaining:
            await asyncio.sleep(0.25)
    if remaining:
        counts: dict[str, int] = {}
        for dispatch_id in remaining:
            raw = await redis.hget(keys.dispatch(dispatch_id), "state")
            state = raw.decode() if isinstance(raw, bytes) else raw or "missing"
            counts[state] = counts.get(state, 0) + 1
        raise RuntimeError(f"{len(remaining)} dispatches did not settle within {within}s: {counts}")
    return records


def _requested_to_speaking(records: dict[str, dict[str, str]]) -> list[float]:
    return [
        (int(r["t_speaking"]) - int(r["t_requested"])) / 1000
        for r in records.values()
        if "t_speaking" in r
    ]


def _cpu_seconds(process: DispatcherProcess) -> float:
    times = psutil.Process(process.process.pid).cpu_times()
    return float(times.user + times.system)


async def _registry(redis: Redis, keys: Keys) -> None:
    await WorkerRegistry(redis, keys, ttl_seconds=3600).heartbeat(
        WorkerInfo(worker_id="bench-simulated", agent_name=AGENT, capacity=1_000_000)
    )


async def _phase(
    redis: Redis, keys: Keys, dispatcher: DispatcherProcess, rate: int, seconds: float, tag: str
) -> dict[str, Any]:
    """``rate`` dispatches/s for ``seconds``, until all speak: CPU, own latency, e2e latency."""
    store = DispatchStore(redis, keys)
    text = await dispatcher.metrics()
    own_before = histogram_buckets(text, "dispatcher_own_latency_seconds")
    steps_before = {
        step: histogram_buckets(text, "dispatcher_own_overhead_seconds", f'step="{step}"')
        for step in ("request", "signal", "timer")
    }
    polls_before = await dispatcher.metric("dispatcher_transitions_total", 'source="poll"')
    calls_before = await dispatcher.metric("dispatcher_livekit_call_seconds_count")
    webhooks_before = await dispatcher.metric("dispatcher_webhooks_total")
    cpu_before = _cpu_seconds(dispatcher)
    count = int(rate * seconds)
    started = time.perf_counter()
    ids = await _submit(store, count, rate, tag)
    records = await _wait_speaking(redis, keys, ids, 120)
    wall = time.perf_counter() - started
    cpu = _cpu_seconds(dispatcher) - cpu_before
    text = await dispatcher.metrics()
    own = bucket_delta(histogram_buckets(text, "dispatcher_own_latency_seconds"), own_before)
    steps = {
        step: bucket_delta(
            histogram_buckets(text, "dispatcher_own_overhead_seconds", f'step="{step}"'), before
        )
        for step, before in steps_before.items()
    }
    polls = await dispatcher.metric("dispatcher_transitions_total", 'source="poll"') - polls_before
    calls = await dispatcher.metric("dispatcher_livekit_call_seconds_count") - calls_before
    webhooks = await dispatcher.metric("dispatcher_webhooks_total") - webhooks_before
    return {
        "rate_per_s": rate,
        "dispatches": count,
        "reached_speaking": sum(1 for r in records.values() if r.get("state") == "speaking"),
        "wall_seconds": round(wall, 2),
        "dispatcher_cpu_seconds": round(cpu, 3),
        "cpu_ms_per_dispatch": round(cpu / count * 1000, 3),
        "requested_to_speaking": summarize_ms(_requested_to_speaking(records)),
        # Transitions made by polling: dispatches the fast signals did not move in time
        # (each poll costs LiveKit calls, so a lagging pipeline costs more CPU per dispatch).
        "transitions_by_polling": polls,
        "livekit_calls_per_dispatch": round(calls / count, 2),
        "webhooks_per_dispatch": round(webhooks / count, 2),
        "own_latency_per_dispatch_ms": {
            "p50": round(histogram_quantile(own, 0.5) * 1000, 3),
            "p99": round(histogram_quantile(own, 0.99) * 1000, 3),
            "samples": own[-1][1] if own else 0,
        },
        "own_overhead_per_step_ms": {
            step: {
                "p50": round(histogram_quantile(b, 0.5) * 1000, 3),
                "p99": round(histogram_quantile(b, 0.99) * 1000, 3),
                "samples": b[-1][1] if b else 0,
            }
            for step, b in steps.items()
        },
    }


async def _single(redis: Redis, redis_url: str, keys: Keys) -> dict[str, Any]:
    store = DispatchStore(redis, keys)
    port = free_port()
    async with _emulator([_hook(port)]) as livekit_url:
        env = dispatcher_env(
            redis_url, keys, livekit_url, "devkey", SECRET, port, "bench-1", **DISPATCHER_SETTINGS
        )
        env["LOG_LEVEL"] = "INFO"  # production level: failures only
        dispatcher = await start_dispatcher(env, port, "bench-1")
        try:
            await dispatcher.wait_ready()
            await _wait_speaking(redis, keys, await _submit(store, WARMUP, 100, "warm"), 60)
            light = await _phase(redis, keys, dispatcher, LIGHT_RATE_PER_S, STEADY_SECONDS, "light")
            steady = await _phase(redis, keys, dispatcher, RATE_PER_S, STEADY_SECONDS, "steady")
            # The sustained rate: a burst as fast as we can write it, until all speak.
            burst_started = time.perf_counter()
            burst_ids = await _submit(store, BURST, None, "burst")
            await _wait_speaking(redis, keys, burst_ids, 180)
            burst_seconds = time.perf_counter() - burst_started
            best_cpu = min(light["cpu_ms_per_dispatch"], steady["cpu_ms_per_dispatch"])
            return {
                "light": light,
                "steady": steady,
                "cpu_ms_per_dispatch": target(best_cpu, 1.0),
                "dispatches_per_cpu_second": round(1000 / best_cpu, 1) if best_cpu else None,
                "own_latency_p99_ms_at_300_per_s": target(
                    steady["own_latency_per_dispatch_ms"]["p99"], 5.0
                ),
                "sustained_rate_per_s": {
                    "burst": BURST,
                    "seconds_to_all_speaking": round(burst_seconds, 2),
                    "rate": round(BURST / burst_seconds, 1),
                },
            }
        finally:
            dispatcher.process.terminate()
            await dispatcher.process.wait()


async def _split(redis: Redis, redis_url: str, keys: Keys) -> dict[str, Any]:
    store = DispatchStore(redis, keys)
    ports = [free_port(), free_port()]
    # LiveKit posts webhooks to one URL: in Kubernetes the dispatcher Service, which hands
    # each to one replica. The balancer here does the same.
    balancer = WebhookBalancer(ports)
    await balancer.start()
    async with _emulator([balancer.url]) as livekit_url:
        replicas = []
        for n, port in enumerate(ports):
            env = dispatcher_env(
                redis_url,
                keys,
                livekit_url,
                "devkey",
                SECRET,
                port,
                f"bench-r{n}",
                **DISPATCHER_SETTINGS,
            )
            replicas.append(await start_dispatcher(env, port, f"bench-r{n}"))
        try:
            for replica in replicas:
                await replica.wait_ready()
            ids = await _submit(store, SPLIT_COUNT, RATE_PER_S, "split")
            await _wait_speaking(redis, keys, ids, 60)
            created = [
                await r.metric("dispatcher_dispatches_created_total", 'outcome="ok"')
                for r in replicas
            ]
            consumed = [await r.metric("dispatcher_requests_consumed_total") for r in replicas]
            shares = [round(c / SPLIT_COUNT, 3) for c in created]
            return {
                "dispatches": SPLIT_COUNT,
                "created_per_replica": created,
                "deliveries_per_replica": consumed,
                "shares": shares,
                "even_split_50_pm_10": all(0.4 <= s <= 0.6 for s in shares),
                "handled_twice": int(sum(created) - SPLIT_COUNT),
            }
        finally:
            for replica in replicas:
                replica.process.terminate()
            for replica in replicas:
                await replica.process.wait()
            await balancer.stop()


async def _library_floor(redis_url: str, steady: dict[str, Any]) -> dict[str, Any]:
    """What livekit-api's calls and webhook checks and the least Redis work cost per dispatch
    here (see bench.dispatcher_floor), beside the 1 ms target and the dispatcher's CPU."""
    async with _emulator([], workers=False) as livekit_url:
        call_us = await dispatcher_floor.livekit_call_cpu_us(livekit_url, "devkey", SECRET)
    webhook_us = await dispatcher_floor.webhook_cpu_us(free_port())
    figures = dispatcher_floor.floor_figures(
        call_us,
        webhook_us,
        dispatcher_floor.webhook_check_cpu_us(),
        await dispatcher_floor.redis_cpu_us_per_dispatch(redis_url),
        steady["livekit_calls_per_dispatch"],
        steady["webhooks_per_dispatch"],
    )
    figures["dispatcher_cpu_ms_per_dispatch_at_300_per_s"] = steady["cpu_ms_per_dispatch"]
    figures["target_ms"] = 1.0
    return figures


async def run() -> dict[str, Any]:
    async with _redis() as redis_url:
        redis = make_client(redis_url, max_connections=256)
        figures: dict[str, Any] = {
            "load_average_at_start": os.getloadavg(),
            "dispatcher_settings": DISPATCHER_SETTINGS,
        }
        try:
            for name, phase in (("single_process", _single), ("two_processes", _split)):
                keys = Keys(f"bench-dispatcher-{uuid.uuid4().hex[:8]}")  # a clean slate each
                await _registry(redis, keys)
                try:
                    figures[name] = await phase(redis, redis_url, keys)
                finally:
                    await delete_namespace(redis, keys)
            figures["library_floor"] = await _library_floor(
                redis_url, figures["single_process"]["steady"]
            )
        finally:
            await redis.aclose()
        figures["load_average_at_end"] = os.getloadavg()
        write_results("dispatcher", figures)
        return figures


if __name__ == "__main__":
    asyncio.run(run())
