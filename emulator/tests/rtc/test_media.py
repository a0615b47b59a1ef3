"""Real SDK participants (livekit 1.1.x, in their own processes) join through the emulator
inside a network namespace, publish a tone and hear each other."""

from __future__ import annotations

import asyncio

import pytest
from livekit import api
from livekit.protocol import models

from livekit_emulator.netns import NetNamespace
from livekit_emulator.rtc.testing import participant_token, spawn_probe
from livekit_emulator.testing import running_emulator
from livekit_emulator.webhook_sink import WebhookSink

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ROOM = "rtc-room"
KEY, SECRET = "devkey", "rtc-test-secret-of-at-least-32-characters"


async def test_two_sdk_participants_hear_each_other(netns: NetNamespace) -> None:
    async with (
        WebhookSink(KEY, SECRET) as sink,
        running_emulator(keys={KEY: SECRET}, webhook_urls=[sink.url], host=netns.server_ip) as emu,
    ):
        alice = await spawn_probe(
            netns,
            emu.ws_url,
            participant_token(KEY, SECRET, ROOM, "alice"),
            name="alice",
            tone_hz=440,
        )
        bob = None
        try:
            connected = await alice.wait_for("connected")
            published = await alice.wait_for("published")
            track_sid = published["track_sid"]
            assert track_sid.startswith("TR_")

            bob = await spawn_probe(
                netns,
                emu.ws_url,
                participant_token(KEY, SECRET, ROOM, "bob"),
                name="bob",
                extra_args=("--send-data", "hello alice", "--rpc-to", "alice"),
            )
            bob_connected = await bob.wait_for("connected")
            assert bob_connected["others"] == ["alice"]
            await bob.wait_for("track_subscribed", identity="alice", track_sid=track_sid)
            heard = await bob.wait_for("audio", track_sid=track_sid, first_nonsilent=True)
            # The publisher learns it has a subscriber (what wait_for_subscription() awaits).
            await alice.wait_for("local_track_subscribed", track_sid=track_sid)
            assert heard["peak_rms"] > 1000  # a 440 Hz tone at 8000 peak, not silence
            await alice.wait_for("participant_connected", identity="bob")
            # Data packets and RPC (request, ack, response: addressed packets) are forwarded.
            got = await alice.wait_for("data_received", identity="bob")
            assert (got["topic"], got["text"]) == ("probe", "hello alice")
            await alice.wait_for("rpc_received", identity="bob", payload="ping")
            assert (await bob.wait_for("rpc_result"))["response"] == "PING"

            lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
            try:
                listed = await lk.room.list_participants(api.ListParticipantsRequest(room=ROOM))
            finally:
                await lk.aclose()
            by_identity = {p.identity: p for p in listed.participants}
            assert set(by_identity) == {"alice", "bob"}
            assert by_identity["alice"].sid == connected["sid"]
            [track] = by_identity["alice"].tracks
            assert (track.sid, track.type, track.source) == (
                track_sid,
                models.TrackType.AUDIO,
                models.TrackSource.MICROPHONE,
            )
            assert by_identity["bob"].tracks == []

            await sink.wait_for(
                lambda evs: (
                    sum(e.event == "participant_joined" for e in evs) == 2
                    and any(e.event == "track_published" for e in evs)
                )
            )
            published_hook = next(e for e in sink.events if e.event == "track_published")
            assert (published_hook.participant.identity, published_hook.track.sid) == (
                "alice",
                track_sid,
            )

            await asyncio.sleep(1.0)  # one second of relayed audio
            assert await bob.leave() == 0
            bob_final = bob.find("audio", track_sid=track_sid, final=True)
            assert bob_final is not None and bob_final["nonsilent"] >= 50
            await alice.wait_for("participant_disconnected", identity="bob")
            await sink.wait_for(
                lambda evs: any(
                    e.event == "participant_left" and e.participant.identity == "bob" for e in evs
                )
            )
            assert await alice.leave() == 0
            await sink.wait_for(
                lambda evs: (
                    any(e.event == "track_unpublished" for e in evs)
                    and sum(e.event == "participant_left" for e in evs) == 2
                )
            )
            print(
                f"\nSDK figures: alice connect {connected['connect_ms']} ms, "
                f"publish {published['publish_ms']} ms; bob connect "
                f"{bob_connected['connect_ms']} ms, first audio frame "
                f"{heard['t_ms'] - bob_connected['t_ms'] + bob_connected['connect_ms']:.0f} ms "
                f"after connect() started"
            )
        finally:
            for probe in (alice, bob):
                if probe is not None and probe.process.returncode is None:
                    await probe.leave()


async def test_manual_subscription_without_auto_subscribe(netns: NetNamespace) -> None:
    """``auto_subscribe=False`` then ``set_subscribed(True)`` per audio track (what
    livekit-agents' ``AutoSubscribe.AUDIO_ONLY`` does): nothing arrives before the
    subscription, the audio after it."""
    async with running_emulator(keys={KEY: SECRET}, host=netns.server_ip) as emu:
        alice = await spawn_probe(
            netns, emu.ws_url, participant_token(KEY, SECRET, ROOM, "alice"), tone_hz=440
        )
        bob = None
        try:
            track_sid = (await alice.wait_for("published"))["track_sid"]
            bob = await spawn_probe(
                netns,
                emu.ws_url,
                participant_token(KEY, SECRET, ROOM, "bob"),
                name="bob",
                auto_subscribe=False,
            )
            await bob.wait_for("track_subscribed", identity="alice", track_sid=track_sid)
            await bob.wait_for("audio", track_sid=track_sid, first_nonsilent=True)
            [bob_session] = [
                s for s in emu.emulator.rtc.sessions if s.participant.identity == "bob"
            ]
            assert not bob_session.auto_subscribe  # the SDK asked for auto_subscribe=0
            assert bob_session.subscriber.has(track_sid)

            # The publisher leaves first: the subscriber's section goes inactive in a new
            # offer that the SDK answers, and it sees the track and the participant go.
            negotiations = bob_session.subscriber.negotiations
            assert await alice.leave() == 0
            await bob.wait_for("track_unsubscribed", identity="alice", track_sid=track_sid)
            await bob.wait_for("participant_disconnected", identity="alice")
            async with asyncio.timeout(5):
                await bob_session.subscriber.wait_negotiations(negotiations + 1)
            assert not bob_session.subscriber.has(track_sid)
        finally:
            for probe in (alice, bob):
                if probe is not None:
                    await probe.leave()


async def test_lost_signalling_socket_the_sdk_rejoins(netns: NetNamespace) -> None:
    """Session resumption is not emulated: when the signalling socket drops, the SDK's resume
    attempt (``reconnect=1``) gets a 404 and it rejoins afresh: a new participant sid, its
    track published again and its audio flowing."""
    async with running_emulator(keys={KEY: SECRET}, host=netns.server_ip) as emu:
        alice = await spawn_probe(
            netns, emu.ws_url, participant_token(KEY, SECRET, ROOM, "alice"), tone_hz=440
        )
        try:
            first = await alice.wait_for("published")
            hub = emu.emulator.rtc
            [session] = list(hub.sessions)
            old_sid = session.participant.sid
            await session.ws.close()  # no leave: as a network glitch would
            async with asyncio.timeout(20):
                while True:
                    rejoined = [s for s in hub.sessions if s.participant.sid != old_sid]
                    tracks = [t for t in hub.published.values() if t.frames > 50]
                    if rejoined and tracks and tracks[0].participant is rejoined[0].participant:
                        break
                    await asyncio.sleep(0.1)  # polling the emulator's state
            assert tracks[0].track.sid != first["track_sid"]
            names = [e["event"] for e in emu.state.events]
            assert names.count("participant_joined") == 2 and "participant_left" in names
        finally:
            await alice.leave()
