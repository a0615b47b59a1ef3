"""The whole path with media: a real worker joins through the emulator's WebRTC, a real SDK
caller hears the agent's greeting (synthetic speech from the Realtime stand-in), and the job
ends when the caller leaves. Runs inside a network namespace (libwebrtc ignores loopback)."""

from __future__ import annotations

import asyncio

import pytest
from livekit import api

from agent_worker.realtime_standin import StandinConfig, running_standin
from agent_worker.testing import dispatch, running_worker
from agentline.redis_conn import EmbeddedRedis
from livekit_emulator.netns import NetNamespace
from livekit_emulator.rtc.testing import netns, participant_token, spawn_probe
from livekit_emulator.testing import running_emulator

pytestmark = [pytest.mark.netns, pytest.mark.slow]
__all__ = ["netns"]  # the fixture, imported to be used here

KEY, SECRET = "devkey", "agent-worker-media-secret-0123456789"
ROOM = "media-room"


async def test_agent_joins_speaks_and_ends_when_the_caller_leaves(netns: NetNamespace) -> None:
    redis = EmbeddedRedis()  # the host's Redis is not reachable from inside the namespace
    redis_url = await redis.start()
    try:
        async with (
            running_emulator(keys={KEY: SECRET}, host=netns.server_ip) as emu,
            running_standin(StandinConfig(pace=1.0)) as standin,
            running_worker(emu.ws_url, KEY, SECRET, redis_url=redis_url, namespace="media",
                           openai_base_url=standin.url, idle_processes=1) as worker,
        ):  # fmt: skip
            caller = await spawn_probe(
                netns, emu.ws_url, participant_token(KEY, SECRET, ROOM, "caller"), name="caller"
            )
            await caller.wait_for("connected")
            lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
            try:
                await dispatch(lk, ROOM, "dsp_media")
            finally:
                await lk.aclose()

            events = await worker.wait_events(
                lambda evs: any(e.kind.value == "audio_published" for e in evs), 30
            )
            assert [e.kind.value for e in events] == [
                "request_received", "accepted", "joined", "audio_published",
            ]  # fmt: skip
            assert all(e.dispatch_id == "dsp_media" for e in events)
            agent = await caller.wait_for("participant_connected")
            assert agent["identity"] == "agent-attar-travel-assistant"
            subscribed = await caller.wait_for(
                "track_subscribed", identity="agent-attar-travel-assistant"
            )
            m = await worker.metrics()
            assert m[("agent_worker_audio_publish_seconds_count", ())] == 1
            assert m[("agent_worker_room_join_seconds_count", ())] == 1
            assert standin.stats.client_events["response.create"] >= 1  # the greeting
            await caller.wait_for(
                "audio", first_nonsilent=True, track_sid=subscribed["track_sid"], within=15
            )
            await asyncio.sleep(2.0)  # two seconds of the greeting

            await caller.leave()  # its exit code is the probe's business
            final = caller.find("audio", final=True, track_sid=subscribed["track_sid"])
            events = await worker.wait_events(
                lambda evs: any(e.kind.value == "ended" for e in evs), 20
            )
            assert events[-1].reason == "caller left"
            # the greeting: speech-level audio over many frames, not a click or silence
            assert final is not None, caller.events
            assert final["peak_rms"] > 1000 and final["nonsilent"] > 50, final
            assert await worker.stop() == 0
    finally:
        await redis.stop()
