"""Simulated workers: registration, capacity, join and publish, and their options."""

from __future__ import annotations

import asyncio

from livekit import api
from livekit.protocol import agent

from livekit_emulator.testing import RunningEmulator, wait_until


async def create(lk: api.LiveKitAPI, room: str, agent_name: str = "sim") -> None:
    await lk.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(room=room, agent_name=agent_name)
    )


def events(emu: RunningEmulator, room: str) -> list[str]:
    return [e["event"] for e in emu.state.events if e["room"] == room]


async def test_registered_like_a_real_worker(livekit_emulator: RunningEmulator) -> None:
    worker_id = await livekit_emulator.admin.add_simulated_worker("sim", capacity=3)
    assert worker_id.startswith("AW_")
    worker = livekit_emulator.state.workers[worker_id]
    assert worker.agent_name == "sim" and worker.simulated
    assert worker.status == agent.WorkerStatus.WS_AVAILABLE


async def test_agent_joins_and_publishes(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    await livekit_emulator.admin.add_simulated_worker("sim", capacity=1)
    await create(lkapi, "r")
    await wait_until(lambda: "track_published" in events(livekit_emulator, "r"))
    assert events(livekit_emulator, "r") == [
        "room_started",
        "participant_joined",
        "track_published",
    ]
    [p] = (await lkapi.room.list_participants(api.ListParticipantsRequest(room="r"))).participants
    assert p.attributes["lk.agent_name"] == "sim" and p.attributes["lk.agent.name"] == "sim"
    assert p.identity.startswith("agent-AJ_") and len(p.tracks) == 1 and p.is_publisher


async def test_capacity_is_respected_and_freed(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    emu = livekit_emulator
    await emu.admin.add_simulated_worker("sim", capacity=1)
    await create(lkapi, "r1")
    await wait_until(lambda: emu.agents_in_room("r1"))
    await create(lkapi, "r2")
    await wait_until(
        lambda: any(j.room_name == "r2" and j.agent_name == "sim" for j in emu.state.dropped_jobs)
    )
    assert emu.agents_in_room("r2") == []
    [worker] = emu.state.workers.values()
    assert worker.status == agent.WorkerStatus.WS_FULL and worker.load == 1.0
    # the agent leaves: its job ends and the slot is free again
    [identity] = emu.agents_in_room("r1")
    await lkapi.room.remove_participant(api.RoomParticipantIdentity(room="r1", identity=identity))
    await wait_until(lambda: worker.status == agent.WorkerStatus.WS_AVAILABLE)
    await create(lkapi, "r3")
    await wait_until(lambda: emu.agents_in_room("r3"))


async def test_room_deletion_ends_the_job(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    emu = livekit_emulator
    await emu.admin.add_simulated_worker("sim", capacity=1, join=False)
    await create(lkapi, "r1")
    [worker] = emu.state.workers.values()
    await wait_until(lambda: worker.running_jobs)
    await lkapi.room.delete_room(api.DeleteRoomRequest(room="r1"))
    await wait_until(
        lambda: not worker.running_jobs and worker.status == agent.WorkerStatus.WS_AVAILABLE
    )


async def test_declining_worker(livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI) -> None:
    await livekit_emulator.admin.add_simulated_worker("sim", accept=False)
    await create(lkapi, "r")
    await wait_until(
        lambda: any(j.agent_name == "sim" for j in livekit_emulator.state.dropped_jobs)
    )
    assert livekit_emulator.agents_in_room("r") == []


async def test_accepts_but_never_joins(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    emu = livekit_emulator
    await emu.admin.add_simulated_worker("sim", join=False)
    await create(lkapi, "r")
    await wait_until(
        lambda: any(j.status == agent.JobStatus.JS_RUNNING for j in emu.state.jobs.values())
    )
    await asyncio.sleep(0.05)
    assert emu.agents_in_room("r") == []
    listed = await lkapi.agent_dispatch.list_dispatch("r")
    assert [len(d.state.jobs) for d in listed if d.agent_name == "sim"] == [1]


async def test_joins_without_audio(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    emu = livekit_emulator
    await emu.admin.add_simulated_worker("sim", publish_audio=False)
    await create(lkapi, "r")
    await wait_until(lambda: emu.agents_in_room("r"))
    await asyncio.sleep(0.05)
    assert "track_published" not in events(emu, "r")


async def test_join_and_publish_delays(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    emu = livekit_emulator
    await emu.admin.add_simulated_worker("sim", join_delay_s=0.2, publish_delay_s=0.1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await create(lkapi, "r")
    await wait_until(lambda: emu.agents_in_room("r"))
    joined = loop.time() - start
    await wait_until(lambda: "track_published" in events(emu, "r"))
    published = loop.time() - start
    assert 0.18 <= joined < 0.5 and published - joined >= 0.08


async def test_cli_style_configuration(livekit_emulator_factory) -> None:  # type: ignore[no-untyped-def]
    async with livekit_emulator_factory(simulated_workers=[("a", 2), ("b", 1)]) as emu:
        assert sorted(w.agent_name for w in emu.state.workers.values()) == ["a", "b"]
        emu.reset()
        assert sorted(w.agent_name for w in emu.state.workers.values()) == ["a", "b"]
