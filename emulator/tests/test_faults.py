"""Every fault switch of the admin API, through the admin client."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from livekit import api

from livekit_emulator.testing import RunningEmulator, running_emulator, wait_until
from livekit_emulator.webhook_sink import WebhookSink
from livekit_emulator.worker_client import RawWorker


async def test_latency(livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI) -> None:
    await livekit_emulator.admin.set_fault("ListRooms", latency_s=0.3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await lkapi.room.list_rooms(api.ListRoomsRequest())
    assert loop.time() - start >= 0.3
    start = loop.time()
    await lkapi.room.create_room(api.CreateRoomRequest(name="fast"))
    assert loop.time() - start < 0.2


async def test_http_status(livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI) -> None:
    await livekit_emulator.admin.set_fault("AgentDispatchService/CreateDispatch", http_status=502)
    with pytest.raises(api.TwirpError) as err:
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room="r", agent_name="a")
        )
    assert (err.value.status, err.value.code) == (502, "unknown")
    assert "r" not in livekit_emulator.state.rooms


async def test_twirp_code_and_count(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    await livekit_emulator.admin.set_fault("CreateDispatch", twirp_code="unavailable", count=2)
    for _ in range(2):
        with pytest.raises(api.TwirpError) as err:
            await lkapi.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(room="r", agent_name="a")
            )
        assert (err.value.status, err.value.code) == (503, "unavailable")
    await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(room="r", agent_name="a")
    )


async def test_reset_connection(livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI) -> None:
    await livekit_emulator.admin.set_fault("*", reset_connection=True, count=1)
    with pytest.raises(aiohttp.ClientError):
        await lkapi.room.list_rooms(api.ListRoomsRequest())
    await lkapi.room.list_rooms(api.ListRoomsRequest())


async def test_clear_faults(livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI) -> None:
    await livekit_emulator.admin.set_fault("*", twirp_code="internal")
    with pytest.raises(api.TwirpError):
        await lkapi.room.list_rooms(api.ListRoomsRequest())
    await livekit_emulator.admin.clear_faults()
    await lkapi.room.list_rooms(api.ListRoomsRequest())


async def test_workers_ignore_availability() -> None:
    async with running_emulator(availability_timeout=0.2) as emu:
        lk = api.LiveKitAPI(emu.http_url, emu.api_key, emu.api_secret)
        await emu.admin.add_simulated_worker("a")
        await emu.admin.workers_ignore_availability("a", True)
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room="r1", agent_name="a")
        )
        await wait_until(lambda: any(j.agent_name == "a" for j in emu.state.dropped_jobs))
        assert emu.state.dropped_jobs[-1].dropped_reason == "agent worker availability timeout"
        await emu.admin.workers_ignore_availability("a", False)
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room="r2", agent_name="a")
        )
        await wait_until(lambda: emu.agents_in_room("r2"))
        await lk.aclose()


async def test_close_worker_sockets(livekit_emulator: RunningEmulator) -> None:
    emu = livekit_emulator
    first = await emu.admin.add_simulated_worker("a")
    async with RawWorker(emu.ws_url, emu.api_key, emu.api_secret) as raw:
        await raw.register("b")
        assert await emu.admin.close_worker_sockets("b") == 1
        await wait_until(lambda: raw.ws is not None and raw.ws.closed)
        assert raw.worker_id not in emu.state.workers
    assert await emu.admin.close_worker_sockets() == 1
    # a simulated worker reconnects at once, as livekit-agents does, with a new id
    await wait_until(lambda: [w.id for w in emu.state.workers.values() if w.agent_name == "a"])
    assert first not in emu.state.workers


async def test_refuse_all(livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI) -> None:
    await livekit_emulator.admin.refuse_all(0.3)
    with pytest.raises(aiohttp.ClientError):
        await lkapi.room.list_rooms(api.ListRoomsRequest())
    assert (await livekit_emulator.admin.state())["faults"]["refused"] == 1  # admin still answers
    await asyncio.sleep(0.35)
    await lkapi.room.list_rooms(api.ListRoomsRequest())


async def test_webhook_drop_and_delay() -> None:
    key, secret = "devkey", "fault-test-secret-0123456789abcdefgh"
    async with (
        WebhookSink(key, secret) as sink,
        running_emulator(keys={key: secret}, webhook_urls=[sink.url]) as emu,
    ):
        lk = api.LiveKitAPI(emu.http_url, key, secret)
        await emu.admin.webhooks(drop=True)
        await lk.room.create_room(api.CreateRoomRequest(name="dropped"))
        await emu.admin.webhooks(drop=False, delay_s=0.3)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await lk.room.create_room(api.CreateRoomRequest(name="delayed"))
        await sink.wait_for(lambda evs: len(evs) == 1)
        assert loop.time() - start >= 0.3
        assert sink.names() == ["room_started"] and sink.events[0].room.name == "delayed"
        assert emu.webhooks.stats["dropped"] == 1
        await lk.aclose()


async def test_reset_and_remove_worker(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    emu = livekit_emulator
    await emu.admin.add_simulated_worker("a")
    await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(room="r", agent_name="a")
    )
    await wait_until(lambda: emu.agents_in_room("r"))
    assert await emu.admin.remove_worker(agent_name="a")
    assert emu.agents_in_room("r") == [] and not emu.state.workers
    assert await emu.admin.max_agents_seen_in_room("r") == 1
    await emu.admin.set_fault("*", latency_s=1)
    await emu.admin.reset()
    state = await emu.admin.state()
    assert (
        state["rooms"] == [] and state["faults"]["faults"] == [] and state["max_agents_seen"] == {}
    )
