"""Capacity-aware admission with real dispatcher processes: two replicas sharing 50 sessions
never over-commit the worker pool; a replica killed while holding reservations loses none of
them and the queue goes on. Simulated workers (the emulator enforces their capacity: a full
worker is never offered a job, which would then be dropped) with registry heartbeats."""

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
from agentline.schema import DispatchRecord, DispatchRequest
from agentline.store import DispatchStore
from livekit_emulator.testing import RunningEmulator

ADMISSION = {**FAST, "max_wait_seconds": 60}


async def _submit(store: DispatchStore, prefix: str) -> str:
    dispatch_id = new_dispatch_id()
    await store.create(
        DispatchRequest(
            dispatch_id=dispatch_id,
            room=f"{prefix}-{dispatch_id[-6:]}",
            agent_name=AGENT,
            requested_at_ms=int(time.time() * 1000),
        )
    )
    return dispatch_id


async def _records(store: DispatchStore, ids: list[str]) -> list[DispatchRecord]:
    records = [await store.get(d) for d in ids]
    assert all(r is not None for r in records)
    return [r for r in records if r is not None]


async def _until(store: DispatchStore, ids: list[str], done, within: float) -> list[DispatchRecord]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while True:
        records = await _records(store, ids)
        if done(records):
            return records
        if time.monotonic() > deadline:
            counts: dict[str, int] = {}
            for r in records:
                counts[r.state.value] = counts.get(r.state.value, 0) + 1
            raise AssertionError(f"not reached within {within}s: {counts}")
        await asyncio.sleep(0.1)


def _count(records: list[DispatchRecord], state: DispatchState) -> int:
    return sum(1 for r in records if r.state is state)


def _end(emu: RunningEmulator, room: str) -> None:
    emu.emulator.rooms.close(emu.emulator.rooms.get(room))


async def _dropped(emu: RunningEmulator) -> list[dict]:  # type: ignore[type-arg]
    state = await emu.admin.state()
    return [j for j in state["dropped_jobs"] if j.get("agent_name") == AGENT]


async def test_two_replicas_fifty_sessions_never_exceed_capacity(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    ports = [free_port(), free_port()]
    async with emulator_behind_balancer(
        ports, simulated_workers=[(AGENT, 5), (AGENT, 5)], departure_timeout=0.5
    ) as emu:
        for _ in range(2):
            await register_worker(redis_client, keys, AGENT, 5)
        store = DispatchStore(redis_client, keys)
        replicas = []
        for port in ports:
            env = replica_env(redis_url, keys, emu, port, f"a{port}", **ADMISSION)
            replicas.append(await start_dispatcher(env, port, f"a{port}"))
        over: list[int] = []
        sampling = True

        async def sample_slots() -> None:  # reservations held, all along the run
            while sampling:
                held = await redis_client.zcard(keys.slots_used(AGENT))
                if held > 10:
                    over.append(held)
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample_slots())
        try:
            for replica in replicas:
                await replica.wait_ready()
            ids = list(await asyncio.gather(*(_submit(store, "fifty") for _ in range(50))))
            records = await _until(
                store, ids,
                lambda rs: _count(rs, DispatchState.SPEAKING) == 10
                and _count(rs, DispatchState.WAITING) == 40,
                within=15,
            )  # fmt: skip
            positions = sorted(r.queue_position for r in records if r.queue_position)
            assert positions == list(range(1, 41))
            ended: set[str] = set()
            while len(ended) < 50:  # hang up every speaking session; the queue refills them
                records = await _records(store, ids)
                for record in records:
                    if record.state is DispatchState.SPEAKING and record.id not in ended:
                        _end(emu, record.room)
                        ended.add(record.id)
                await asyncio.sleep(0.05)
                records = await _until(
                    store, ids,
                    lambda rs: all(r.state in (DispatchState.SPEAKING, DispatchState.WAITING,
                                               DispatchState.ENDED) for r in rs)
                    and _count(rs, DispatchState.SPEAKING) == min(10, 50 - len(ended)),
                    within=10,
                )  # fmt: skip
            records = await _until(
                store, ids, lambda rs: _count(rs, DispatchState.ENDED) == 50, within=10
            )
            assert all(r.attempts == 1 for r in records)  # no job was dropped and retried
            assert await _dropped(emu) == []  # no worker was offered a job beyond capacity
            assert over == [], f"reservations above capacity: {max(over)}"
            state = await emu.admin.state()
            assert max(state["max_agents_seen"].values()) == 1
            created = [
                await r.metric("dispatcher_dispatches_created_total", 'outcome="ok"')
                for r in replicas
            ]
            assert sum(created) == 50 and min(created) > 0, created
        finally:
            sampling = False
            await sampler
            await stop_replicas(*replicas)


async def test_replica_killed_holding_reservations_queue_goes_on(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    ports = [free_port(), free_port()]
    async with emulator_behind_balancer(
        ports, simulated_workers=[(AGENT, 1), (AGENT, 1)], departure_timeout=0.5
    ) as emu:
        for _ in range(2):
            await register_worker(redis_client, keys, AGENT, 1)
        store = DispatchStore(redis_client, keys)
        env = {p: replica_env(redis_url, keys, emu, p, f"k{p}", **ADMISSION) for p in ports}
        first = await start_dispatcher(env[ports[0]], ports[0], "first")
        await first.wait_ready()
        await emu.admin.set_fault("CreateRoom", latency_s=3.0)  # LiveKit slow: A holds slots
        ids = []
        for _ in range(5):
            ids.append(await _submit(store, "kill"))
            await _until(
                store, ids[-1:],
                lambda rs: rs[0].state in (DispatchState.DISPATCHING, DispatchState.WAITING),
                within=5,
            )  # fmt: skip
        records = await _records(store, ids)
        assert [r.state for r in records] == [DispatchState.DISPATCHING] * 2 + [
            DispatchState.WAITING
        ] * 3
        assert await redis_client.zcard(keys.slots_used(AGENT)) == 2
        first.process.send_signal(signal.SIGKILL)  # holding both reservations
        await first.process.wait()
        await emu.admin.clear_faults()
        # While no dispatcher runs, the caller of one of them hangs up (token-api's cancel).
        assert (await store.transition(ids[0], DispatchState.CANCELLED)).applied
        await redis_client.xadd(keys.control, {"action": "cancel", "dispatch_id": ids[0]})
        second = await start_dispatcher(env[ports[1]], ports[1], "second")
        try:
            await second.wait_ready()
            # The cancelled one's slot goes back: the queue head is dispatched with it; the
            # other reservation is kept by its dispatch, resumed once the dead lease expires.
            records = await _until(
                store, ids,
                lambda rs: rs[1].state is DispatchState.SPEAKING
                and rs[2].state is DispatchState.SPEAKING,
                within=15,
            )  # fmt: skip
            assert [r.state for r in records[3:]] == [DispatchState.WAITING] * 2
            assert [r.queue_position for r in records[3:]] == [1, 2]
            for record in records[1:3]:
                _end(emu, record.room)
            records = await _until(
                store, ids,
                lambda rs: all(r.state is DispatchState.SPEAKING for r in rs[3:]),
                within=10,
            )  # fmt: skip
            assert all(r.attempts == 1 for r in records[1:])
            assert await _dropped(emu) == []
            assert await redis_client.zcard(keys.slots_used(AGENT)) == 2
            state = await emu.admin.state()
            assert max(state["max_agents_seen"].values()) <= 1
        finally:
            await stop_replicas(second)
