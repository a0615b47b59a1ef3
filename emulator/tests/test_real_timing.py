"""The real-timing option reproduces livekit-server's loopback timing."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from livekit import api

from livekit_emulator import timing
from livekit_emulator.testing import RunningEmulator, running_emulator, wait_until


def event_time(emu: RunningEmulator, room: str, name: str) -> float:
    return next(e["t"] for e in emu.state.events if e["room"] == room and e["event"] == name)


def job_started(emu: RunningEmulator, room: str) -> float | None:
    jobs = [j for j in emu.state.jobs.values() if j.room_name == room and j.agent_name]
    return jobs[0].listed_state.started_at / 1e9 if jobs else None


async def test_single_dispatch_timeline() -> None:
    async with running_emulator(real_timing=True, simulated_workers=[("a", 5)]) as emu:
        lk = api.LiveKitAPI(emu.http_url, emu.api_key, emu.api_secret)
        start = time.time()
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room="r", agent_name="a")
        )
        await wait_until(
            lambda: any(e["event"] == "track_published" for e in emu.state.events), within=3
        )
        await lk.aclose()
        offered = job_started(emu, "r")
        assert offered is not None
        joined = event_time(emu, "r", "participant_joined")
        published = event_time(emu, "r", "track_published")
        assert 0.15 <= offered - start <= 0.45  # CreateDispatch -> job request ~0.2 s
        assert 0.33 <= joined - offered <= 0.6  # agent joins ~350-420 ms after
        assert 0.035 <= published - joined <= 0.1  # publishes 40-60 ms later


async def burst(emu: RunningEmulator, room_config: bool, n: int = 50) -> list[float]:
    lk = api.LiveKitAPI(emu.http_url, emu.api_key, emu.api_secret)

    async def one(i: int) -> float:
        start = time.time()
        if room_config:
            await lk.room.create_room(
                api.CreateRoomRequest(name=f"b{i}", agents=[api.RoomAgentDispatch(agent_name="a")])
            )
        else:
            await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(room=f"b{i}", agent_name="a")
            )
        return start

    starts = await asyncio.gather(*(one(i) for i in range(n)))
    offered = await wait_until(
        lambda: (s := [job_started(emu, f"b{i}") for i in range(n)]) and all(s) and s, within=15
    )
    await lk.aclose()
    return [o - s for o, s in zip(offered, starts, strict=True)]


@pytest.mark.slow
async def test_burst_of_new_rooms_dispatch_vs_room_configuration() -> None:
    async with running_emulator(real_timing=True, simulated_workers=[("a", 100)]) as emu:
        by_dispatch = statistics.median(await burst(emu, room_config=False))
    async with running_emulator(real_timing=True, simulated_workers=[("a", 100)]) as emu:
        by_room_config = statistics.median(await burst(emu, room_config=True))
    # measured on the real server: p50 ~2.3 s vs ~0.33 s
    assert 1.5 <= by_dispatch <= 3.3, by_dispatch
    assert 0.2 <= by_room_config <= 0.7, by_room_config


async def test_idle_server_rebuilds_its_agent_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "IDLE_REBUILD_AFTER_S", 0.2)
    monkeypatch.setattr(timing, "IDLE_REBUILD_S", 0.6)
    async with running_emulator(real_timing=True, simulated_workers=[("a", 5)]) as emu:
        await asyncio.sleep(0.3)
        lk = api.LiveKitAPI(emu.http_url, emu.api_key, emu.api_secret)
        start = time.time()
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room="r", agent_name="a")
        )
        offered = await wait_until(lambda: job_started(emu, "r"), within=3)
        assert offered - start >= 0.6
        start = time.time()
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room="r2", agent_name="a")
        )
        offered = await wait_until(lambda: job_started(emu, "r2"), within=3)
        assert offered - start < 0.5
        await lk.aclose()


async def test_list_dispatch_shows_the_first_job_late(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "FIRST_LISTING_DELAY_S", 0.8)
    async with running_emulator(real_timing=True, simulated_workers=[("a", 5)]) as emu:
        lk = api.LiveKitAPI(emu.http_url, emu.api_key, emu.api_secret)

        async def listed_after(room: str) -> float:
            start = time.time()
            await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(room=room, agent_name="a")
            )
            while True:
                if any(d.state.jobs for d in await lk.agent_dispatch.list_dispatch(room)):
                    return time.time() - start
                await asyncio.sleep(0.02)

        first = await listed_after("r1")
        second = await listed_after("r2")
        assert first >= 0.9 and second < 0.7, (first, second)
        await lk.aclose()
