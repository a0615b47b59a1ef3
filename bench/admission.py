"""Capacity-aware admission: how soon a freed slot dispatches the head of the queue, and how
many queue operations per second the admission scripts do.

* Slot freed → next dispatch: a dispatcher process and an in-process emulator (one simulated
  worker, zero delays) on real Redis. The worker pool is full and dispatches wait; one session
  at a time is ended (its room closed: the agent leaves, the job ends, LiveKit's webhooks go to
  the dispatcher) and we measure from that moment (``t0``, the bench's clock) to the moment the
  emulator created the queue head's LiveKit dispatch (its ``created_at_ns``: the CreateRoom
  with the agent in the room configuration, the first call that dispatches a new session).
  The same clock on one machine; the whole signal path (webhook delivery and verification,
  the ended transition, the release script, the lease, the dispatching transition, the call)
  is inside the figure. Target p99 ≤ 50 ms.
* Queue operations per second: ``Admission`` scripts on real Redis from 32 concurrent tasks:
  queueing (``try_admit`` of a new dispatch when the pool is full) and release-and-admit
  (``release``, which admits the head in the freed slot), at two pool sizes.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from agentline.admission import Admission
from agentline.ids import new_dispatch_id
from agentline.keys import Keys
from agentline.redis_conn import delete_namespace, make_client
from agentline.registry import WorkerRegistry
from agentline.schema import DispatchRequest, WorkerInfo
from agentline.store import DispatchStore
from bench.common import summarize_ms, target, write_results
from bench.dispatcher import SECRET, _hook, _redis
from bench.http_load import free_port
from dispatcher.testing import dispatcher_env, start_dispatcher
from livekit_emulator.testing import RunningEmulator, running_emulator

AGENT = "travel-assistant"
HANDOFFS = int(os.environ.get("BENCH_ADMISSION_HANDOFFS", "200"))
POOL = 4  # slots of the simulated worker
QUEUE_OPS = int(os.environ.get("BENCH_ADMISSION_QUEUE_OPS", "5000"))
CONCURRENCY = 32


async def _state(store: DispatchStore, dispatch_id: str) -> str:
    record = await store.get(dispatch_id)
    return record.state.value if record else ""


async def _until_state(store: DispatchStore, dispatch_id: str, state: str, within: float) -> None:
    deadline = time.monotonic() + within
    while await _state(store, dispatch_id) != state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dispatch_id} not {state} after {within}s")
        await asyncio.sleep(0.002)


async def _dispatch_created_ns(emu: RunningEmulator, room: str, within: float = 10.0) -> int:
    """When the emulator created the room's (first) LiveKit dispatch."""
    deadline = time.monotonic() + within
    while True:
        found = emu.emulator.rooms.get(room)
        if found is not None and found.dispatches:
            return min(d.created_at_ns for d in found.dispatches.values())
        if time.monotonic() > deadline:
            raise TimeoutError(f"no dispatch in {room}")
        await asyncio.sleep(0.0005)


async def _handoffs(redis: Redis, redis_url: str, keys: Keys) -> dict[str, Any]:
    port = free_port()
    store = DispatchStore(redis, keys)
    await WorkerRegistry(redis, keys, ttl_seconds=3600).heartbeat(
        WorkerInfo(worker_id="bench-admission", agent_name=AGENT, capacity=POOL)
    )
    async with running_emulator(
        keys={"devkey": SECRET},
        webhook_urls=[_hook(port)],
        simulated_workers=[(AGENT, POOL)],
        departure_timeout=0.5,
    ) as emu:
        env = dispatcher_env(
            redis_url, keys, emu.http_url, "devkey", SECRET, port, "bench-admission",
            max_wait_seconds=3600, poll_interval_seconds=1.0,
        )  # fmt: skip
        process = await start_dispatcher(env, port, "bench-admission")
        try:
            await process.wait_ready()
            rooms: dict[str, str] = {}
            ids: list[str] = []
            for i in range(POOL + HANDOFFS):
                dispatch_id = new_dispatch_id()
                rooms[dispatch_id] = f"bench-admission-{i}"
                await store.create(
                    DispatchRequest(
                        dispatch_id=dispatch_id,
                        room=rooms[dispatch_id],
                        agent_name=AGENT,
                        requested_at_ms=time.time_ns() // 1_000_000,
                    )
                )
                ids.append(dispatch_id)
                expected = "speaking" if i < POOL else "waiting"
                await _until_state(store, dispatch_id, expected, 10)
            speaking = collections.deque(ids[:POOL])
            gaps_s: list[float] = []
            internal_s: list[float] = []
            for head in ids[POOL:]:
                done = speaking.popleft()
                t0 = time.time_ns()
                room = emu.emulator.rooms.get(rooms[done])
                assert room is not None
                emu.emulator.rooms.close(room)
                created = await _dispatch_created_ns(emu, rooms[head])
                gaps_s.append((created - t0) / 1e9)
                await _until_state(store, head, "speaking", 10)
                ended, started = await store.get(done), await store.get(head)
                if ended and started:
                    internal_s.append(
                        (started.timestamps["dispatching"] - ended.timestamps["ended"]) / 1000
                    )
                speaking.append(head)
            cpu = await process.metric("process_cpu_seconds_total")
        finally:
            process.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.process.wait(), 15)
    summary = summarize_ms(gaps_s)
    return {
        "handoffs": HANDOFFS,
        "pool_slots": POOL,
        "slot_freed_to_livekit_dispatch": summary,
        "p99_target": target(summary["p99_ms"], 50.0),
        "ended_recorded_to_dispatching_recorded": summarize_ms(internal_s),
        "dispatcher_cpu_seconds": cpu,
    }


async def _queue_ops(redis: Redis, keys: Keys, slots: int) -> dict[str, Any]:
    registry = WorkerRegistry(redis, keys, ttl_seconds=3600)
    per_worker = max(1, slots // 10)
    for n in range(slots // per_worker):
        await registry.heartbeat(WorkerInfo(f"w{n}", AGENT, per_worker))
    admission = Admission(redis, keys, reserve_ms=3_600_000)
    holders: collections.deque[str] = collections.deque()
    for n in range(slots):
        assert (await admission.try_admit(f"held-{n}", AGENT)).admitted
        holders.append(f"held-{n}")
    pending = collections.deque(f"queued-{n}" for n in range(QUEUE_OPS))

    async def queue_worker() -> None:
        while pending:
            result = await admission.try_admit(pending.popleft(), AGENT)
            assert not result.admitted

    started = time.perf_counter()
    await asyncio.gather(*(queue_worker() for _ in range(CONCURRENCY)))
    queue_s = time.perf_counter() - started

    released = 0

    async def release_worker() -> None:
        nonlocal released
        while holders and released < QUEUE_OPS:
            released += 1
            admitted = await admission.release(holders.popleft(), AGENT)
            holders.extend(admitted)

    started = time.perf_counter()
    await asyncio.gather(*(release_worker() for _ in range(CONCURRENCY)))
    release_s = time.perf_counter() - started
    status = await admission.status(AGENT)
    assert status.used == slots and status.waiting == 0, status
    return {
        "pool_slots": slots,
        "operations": QUEUE_OPS,
        "queue_per_s": round(QUEUE_OPS / queue_s),
        "release_and_admit_per_s": round(released / release_s),
    }


async def run() -> dict[str, Any]:
    async with _redis() as redis_url:
        redis = make_client(redis_url, max_connections=128)
        figures: dict[str, Any] = {"load_average_at_start": os.getloadavg()}
        try:
            for slots in (10, 1000):
                keys = Keys(f"bench-admission-{uuid.uuid4().hex[:8]}")
                try:
                    figures[f"queue_ops_{slots}_slots"] = await _queue_ops(redis, keys, slots)
                finally:
                    await delete_namespace(redis, keys)
            keys = Keys(f"bench-admission-{uuid.uuid4().hex[:8]}")
            try:
                figures["slot_freed_to_next_dispatch"] = await _handoffs(redis, redis_url, keys)
            finally:
                await delete_namespace(redis, keys)
        finally:
            await redis.aclose()
        figures["load_average_at_end"] = os.getloadavg()
        write_results("admission", figures)
        return figures


if __name__ == "__main__":
    asyncio.run(run())
