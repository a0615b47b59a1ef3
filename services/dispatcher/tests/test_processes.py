"""Real dispatcher processes: SIGKILL in the middle of 200 dispatches, SIGTERM drain, and two
replicas sharing the work."""

from __future__ import annotations

import asyncio
import signal
import time

from harness import AGENT, free_port, register_worker
from procs import FAST, emulator_behind_balancer, replica_env, start_dispatcher, stop_replicas
from redis.asyncio import Redis

from agentline.ids import new_dispatch_id
from agentline.keys import Keys
from agentline.lifecycle import DispatchState
from agentline.schema import DispatchRequest
from agentline.store import DispatchStore

DONE = {DispatchState.SPEAKING, DispatchState.ENDED, DispatchState.FAILED, DispatchState.CANCELLED}


async def _submit(store: DispatchStore, n: int, prefix: str, pace_s: float = 0.0) -> list[str]:
    ids = []
    for i in range(n):
        dispatch_id = new_dispatch_id()
        await store.create(
            DispatchRequest(
                dispatch_id=dispatch_id,
                room=f"{prefix}-{i}",
                agent_name=AGENT,
                requested_at_ms=int(time.time() * 1000),
            )
        )
        ids.append(dispatch_id)
        if pace_s:
            await asyncio.sleep(pace_s)
    return ids


async def _wait_all(store: DispatchStore, ids: list[str], states: set[DispatchState], within: float) -> dict[str, DispatchState]:  # fmt: skip
    deadline = time.monotonic() + within
    while True:
        records = [await store.get(d) for d in ids]
        seen = {d: r.state for d, r in zip(ids, records, strict=True) if r is not None}
        if all(seen.get(d) in states for d in ids) or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.2)


async def test_sigkill_mid_run_loses_nothing_and_never_doubles(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    ports = [free_port(), free_port()]
    # 200 rooms closed at once while the balancer's retries to the killed replica hold the
    # senders: past 100 waiting events a sender drops them, as LiveKit does, and those
    # dispatches would end only at the 30 s poll of a speaking dispatch. This test is about
    # the crash, so the senders keep everything here.
    async with emulator_behind_balancer(
        ports, simulated_workers=[(AGENT, 1000)], departure_timeout=0.5, webhook_queue_size=10_000
    ) as emu:
        await register_worker(redis_client, keys, AGENT, 1000)
        store = DispatchStore(redis_client, keys)
        env = {p: replica_env(redis_url, keys, emu, p, f"d{p}", **FAST) for p in ports}
        first = await start_dispatcher(env[ports[0]], ports[0], "first")
        await first.wait_ready()
        submitting = asyncio.create_task(_submit(store, 200, "kill", pace_s=0.005))
        await asyncio.sleep(0.5)  # in the middle of the run
        first.process.send_signal(signal.SIGKILL)
        await first.process.wait()
        second = await start_dispatcher(env[ports[1]], ports[1], "second")
        try:
            await second.wait_ready()
            ids = await submitting
            started = time.monotonic()
            seen = await _wait_all(store, ids, DONE, within=25)
            print(f"settled {time.monotonic() - started:.1f}s after the kill")
            missing = [d for d in ids if seen.get(d) not in DONE]
            assert not missing, f"{len(missing)} not settled: {[seen.get(d) for d in missing[:5]]}"
            # end every session: the rooms close, every dispatch becomes terminal
            state = await emu.admin.state()
            for room in state["rooms"]:
                emu.emulator.rooms.close(emu.emulator.rooms.get(room["name"]))
            terminal = {DispatchState.ENDED, DispatchState.FAILED, DispatchState.CANCELLED}
            started = time.monotonic()
            seen = await _wait_all(store, ids, terminal, within=15)
            print(f"ended {time.monotonic() - started:.1f}s after the rooms closed")
            assert all(seen.get(d) is DispatchState.ENDED for d in ids), {s for s in seen.values()}
            max_seen = (await emu.admin.state())["max_agents_seen"]
            assert len(max_seen) == 200 and max(max_seen.values()) == 1
        finally:
            await stop_replicas(second)


async def test_two_replicas_share_the_work_evenly_without_handling_twice(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    ports = [free_port(), free_port()]
    async with emulator_behind_balancer(ports, simulated_workers=[(AGENT, 1000)]) as emu:
        await register_worker(redis_client, keys, AGENT, 1000)
        store = DispatchStore(redis_client, keys)
        replicas = []
        for port in ports:
            env = replica_env(redis_url, keys, emu, port, f"r{port}", **FAST)
            replicas.append(await start_dispatcher(env, port, f"r{port}"))
        try:
            for replica in replicas:
                await replica.wait_ready()
            ids = await _submit(store, 200, "split", pace_s=0.003)
            seen = await _wait_all(store, ids, {DispatchState.SPEAKING}, within=20)
            assert all(seen.get(d) is DispatchState.SPEAKING for d in ids)
            consumed = [await r.metric("dispatcher_requests_consumed_total") for r in replicas]
            created = [
                await r.metric("dispatcher_dispatches_created_total", 'outcome="ok"')
                for r in replicas
            ]
            print(f"requests consumed per replica: {consumed}, created: {created}")
            # A redelivered entry (claimed after DISPATCHER_CLAIM_IDLE_SECONDS under this
            # load) finds its record past `requested` and does nothing: "consumed" counts
            # deliveries; "created" counts LiveKit dispatches made.
            assert sum(created) == 200  # none handled twice
            for share in created:
                assert 0.4 <= share / 200 <= 0.6, created
            state = await emu.admin.state()
            assert all(len(room["dispatches"]) == 1 for room in state["rooms"])
            assert max(state["max_agents_seen"].values()) == 1
        finally:
            await stop_replicas(*replicas)


async def test_sigterm_drains_in_flight_then_exits_zero(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    ports = [free_port(), free_port()]
    async with emulator_behind_balancer(ports, simulated_workers=[(AGENT, 100)]) as emu:
        await register_worker(redis_client, keys, AGENT, 100)
        store = DispatchStore(redis_client, keys)
        env = {p: replica_env(redis_url, keys, emu, p, f"t{p}", **FAST) for p in ports}
        first = await start_dispatcher(env[ports[0]], ports[0], "first")
        await first.wait_ready()
        await emu.admin.set_fault("CreateRoom", latency_s=0.7)
        ids = await _submit(store, 5, "drain")
        await _wait_all(store, ids, {DispatchState.DISPATCHING}, within=3)
        started = time.monotonic()
        first.process.send_signal(signal.SIGTERM)  # while CreateRoom calls are in flight
        assert await asyncio.wait_for(first.process.wait(), 10) == 0
        assert time.monotonic() - started < FAST["drain_seconds"] + 3
        await emu.admin.clear_faults()
        seen = {d: (await store.get(d)).state for d in ids}  # type: ignore[union-attr]
        assert all(state is not DispatchState.DISPATCHING for state in seen.values()), seen
        second = await start_dispatcher(env[ports[1]], ports[1], "second")
        try:
            await second.wait_ready()
            seen = await _wait_all(store, ids, {DispatchState.SPEAKING}, within=10)
            assert all(seen.get(d) is DispatchState.SPEAKING for d in ids), seen
            max_seen = (await emu.admin.state())["max_agents_seen"]
            assert max(max_seen.values()) == 1
        finally:
            await stop_replicas(second)
