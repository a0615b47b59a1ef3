"""The core path: a dispatch reaches a simulated worker whose agent joins and publishes."""

from __future__ import annotations

import asyncio

from livekit import api
from livekit.protocol import agent

from livekit_emulator.testing import RunningEmulator


async def wait_for(predicate, within: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_dispatch_to_simulated_worker(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    livekit_emulator.add_simulated_worker("sim", capacity=2)
    d = await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(room="r", agent_name="sim", metadata="m")
    )
    assert d.id.startswith("AD_") and list(d.state.jobs) == []
    room = livekit_emulator.state.rooms["r"]
    await wait_for(lambda: any(p.tracks for p in room.participants.values()))
    dispatches = await lkapi.agent_dispatch.list_dispatch("r")
    named = next(x for x in dispatches if x.agent_name == "sim")
    assert [j.state.status for j in named.state.jobs] == [agent.JobStatus.JS_RUNNING]
    assert await livekit_emulator.admin.agents_in_room("r") == [
        named.state.jobs[0].state.participant_identity
    ]
    assert await livekit_emulator.admin.max_agents_seen_in_room("r") == 1
    events = [e["event"] for e in livekit_emulator.state.events]
    assert events == ["room_started", "participant_joined", "track_published"]
