"""A dispatch reaches speaking through the emulator's simulated workers."""

from __future__ import annotations

from harness import AGENT, harness
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.lifecycle import DispatchState
from agentline.schema import DispatchKind, DispatchPath


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


async def test_dispatch_metadata_carries_id_and_continues_the_api_trace(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    import json
    import time

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from agentline.ids import new_dispatch_id
    from agentline.schema import DispatchRequest

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with harness(redis_client, redis_url, keys) as h:
        dispatch_id = new_dispatch_id()
        await h.store.create(
            DispatchRequest(
                dispatch_id=dispatch_id,
                room="traced-room",
                agent_name=AGENT,
                metadata="caller-meta",
                requested_at_ms=int(time.time() * 1000),
                trace={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
            )
        )
        await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=5)
        state = await h.emu.admin.state()
        room = next(r for r in state["rooms"] if r["name"] == "traced-room")
        (dispatch,) = room["dispatches"]
        meta = json.loads(dispatch["metadata"])
        assert meta["dispatch_id"] == dispatch_id
        assert meta["metadata"] == "caller-meta"
        assert meta.get("attempt", 1) == 1  # omitted when default (msgspec omit_defaults)
        parent = meta["trace"]["traceparent"].split("-")
        assert parent[1] == trace_id  # the same trace
        assert parent[2] != "00f067aa0ba902b7"  # continued by the dispatcher's own span


async def test_metrics_and_health_endpoints(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    import aiohttp

    async with harness(redis_client, redis_url, keys) as h:
        dispatch_id = await h.submit()
        await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=5)
        base = f"http://127.0.0.1:{h.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200 and (await response.json())["ready"] is True
            async with session.get(f"{base}/metrics") as response:
                text = await response.text()
        for name in (
            "dispatcher_requests_consumed_total 1.0",
            'dispatcher_dispatches_created_total{outcome="ok",path="room_config"} 1.0',
            'dispatcher_transitions_total{source="webhook",state="speaking"} 1.0',
            "dispatcher_stage_latency_seconds_bucket",
            'stage="requested_to_speaking"',
            "dispatcher_livekit_call_seconds_bucket",
            "dispatcher_own_latency_seconds_count 1.0",
            "dispatcher_stream_lag 0.0",
            "dispatcher_stream_pending 0.0",
            "dispatcher_dead_letters 0.0",
            "process_cpu_seconds_total",
        ):
            assert name in text, name
