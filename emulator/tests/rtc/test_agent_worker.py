"""A stock livekit-agents worker (real ``/agent`` protocol, real job process) gets a job from
the emulator, joins with ``ctx.connect()`` over WebRTC and publishes audio that a real SDK
caller hears; the caller's audio reaches the agent too."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest
from livekit import api
from livekit.protocol import models

from livekit_emulator.netns import NetNamespace
from livekit_emulator.rtc.testing import participant_token, spawn_probe
from livekit_emulator.testing import running_emulator
from livekit_emulator.webhook_sink import WebhookSink

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(150)]

ROOM = "agent-room"
AGENT = "rtc-tone-agent"
KEY, SECRET = "devkey", "rtc-test-secret-of-at-least-32-characters"


class Lines:
    """JSON lines of a subprocess's stdout, awaitable."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self.other: list[str] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            text = raw.decode(errors="replace").strip()
            try:
                event = json.loads(text)
                if isinstance(event, dict) and "event" in event:
                    self.events.append(event)
                else:
                    self.other.append(text)
            except json.JSONDecodeError:
                self.other.append(text)
            self._changed.set()
        self._changed.set()

    async def wait_for(self, event: str, within: float = 30.0) -> dict[str, Any]:
        try:
            async with asyncio.timeout(within):
                while True:
                    found = next((e for e in self.events if e["event"] == event), None)
                    if found is not None:
                        return found
                    if self.process.returncode is not None:
                        raise AssertionError(f"worker exited before {event}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            tail = "\n".join(self.other[-30:])
            raise AssertionError(f"no {event} within {within}s: {self.events}\n{tail}") from None


async def test_real_worker_connects_publishes_and_hears(netns: NetNamespace) -> None:
    async with (
        WebhookSink(KEY, SECRET) as sink,
        running_emulator(keys={KEY: SECRET}, webhook_urls=[sink.url], host=netns.server_ip) as emu,
    ):
        env = dict(
            os.environ,
            LIVEKIT_URL=emu.ws_url,
            LIVEKIT_API_KEY=KEY,
            LIVEKIT_API_SECRET=SECRET,
            TONE_AGENT_HZ="330",
        )
        worker = await netns.spawn(
            [sys.executable, "-m", "livekit_emulator.rtc.tone_agent", "--agent-name", AGENT],
            env=env,
            stderr=asyncio.subprocess.STDOUT,
        )
        out = Lines(worker)
        caller = None
        try:
            # A worker registers once its first job process is warm: seconds on a busy machine.
            await out.wait_for("registered", within=60)
            lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
            try:
                await lk.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(room=ROOM, agent_name=AGENT)
                )
                caller = await spawn_probe(
                    netns,
                    emu.ws_url,
                    participant_token(KEY, SECRET, ROOM, "caller"),
                    name="caller",
                    tone_hz=440,
                )
                caller_connected = await caller.wait_for("connected")
                agent_connected = await out.wait_for("connected")
                agent_published = await out.wait_for("published")
                agent_identity = agent_connected["identity"]
                if agent_identity not in caller_connected["others"]:  # the agent came later
                    await caller.wait_for("participant_connected", identity=agent_identity)
                await caller.wait_for(
                    "track_subscribed",
                    identity=agent_identity,
                    track_sid=agent_published["track_sid"],
                )
                await caller.wait_for(
                    "audio", track_sid=agent_published["track_sid"], first_nonsilent=True
                )
                await out.wait_for("subscribed")  # the caller subscribed to the agent's track
                await out.wait_for("attributes_set")
                announced = caller_connected["attributes"].get(agent_identity, {})
                if announced.get("lk.agent.state") != "speaking":  # set after the caller came
                    state = await caller.wait_for("attributes_changed", identity=agent_identity)
                    assert state["changed"] == {"lk.agent.state": "speaking"}
                heard = await out.wait_for("heard")
                assert heard["identity"] == "caller"

                assert emu.agents_in_room(ROOM) == [agent_identity]
                listed = await lk.room.list_participants(api.ListParticipantsRequest(room=ROOM))
                kinds = {p.identity: p.kind for p in listed.participants}
                assert kinds == {
                    "caller": models.ParticipantInfo.Kind.STANDARD,
                    agent_identity: models.ParticipantInfo.Kind.AGENT,
                }
            finally:
                await lk.aclose()
            await sink.wait_for(
                lambda evs: (
                    any(
                        e.event == "participant_joined"
                        and e.participant.kind == models.ParticipantInfo.Kind.AGENT
                        for e in evs
                    )
                    and any(
                        e.event == "track_published" and e.track.sid == agent_published["track_sid"]
                        for e in evs
                    )
                )
            )
            print(
                f"\nagent ctx.connect() {agent_connected['connect_ms']} ms, "
                f"publish {agent_published['publish_ms']} ms"
            )
        finally:
            if caller is not None:
                await caller.leave()
            if worker.returncode is None:
                worker.terminate()
                try:
                    async with asyncio.timeout(15):
                        await worker.wait()
                except TimeoutError:
                    worker.kill()
                    await worker.wait()
