"""A dispatch reaches speaking through the emulator's simulated workers."""

from __future__ import annotations

from agentline.keys import Keys
from agentline.lifecycle import DispatchState
from agentline.schema import DispatchKind, DispatchPath
from harness import AGENT, harness
from redis.asyncio import Redis


async def test_new_room_reaches_speaking_via_room_config(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys) as h:
        dispatch_id = await h.submit(room="happy-room")
        record = await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=5)
        assert record.path is DispatchPath.ROOM_CONFIG
        assert record.livekit_dispatch_id.startswith("AD_")
        assert record.agent_identity
        assert record.attempts == 1
        seen = await h.states_seen(dispatch_id)
        assert seen[:2] == ["requested", "dispatching"]
        assert "speaking" in seen
        assert await h.emu.admin.agents_in_room("happy-room") == [record.agent_identity]
        # the stream entry is settled
        pending = await redis_client.xpending(keys.requests, "dispatchers")
        assert pending["pending"] == 0


async def test_existing_room_uses_create_dispatch(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys) as h:
        from livekit import api

        async with api.LiveKitAPI(h.emu.http_url, h.emu.api_key, h.emu.api_secret) as lk:
            await lk.room.create_room(api.CreateRoomRequest(name="existing-room"))
        dispatch_id = await h.submit(room="existing-room", kind=DispatchKind.SESSION)
        record = await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=5)
        assert record.path is DispatchPath.CREATE_DISPATCH
        assert await h.emu.admin.max_agents_seen_in_room("existing-room") == 1
        assert record.agent_name == AGENT
