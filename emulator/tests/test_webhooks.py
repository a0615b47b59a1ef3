"""Webhooks: signed as LiveKit signs them, verified by livekit-api's WebhookReceiver, in the
real server's order, retried on failure."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

import jwt
import pytest
from livekit import api
from livekit.protocol import models

from livekit_emulator.config import EmulatorConfig
from livekit_emulator.testing import running_emulator, wait_until
from livekit_emulator.webhook_sink import WebhookSink
from livekit_emulator.webhooks import fnv1a_32

KEY = "devkey"
SECRET = "webhook-test-secret-0123456789-abcdef"


async def test_agent_lifecycle_webhooks_verify_with_webhook_receiver() -> None:
    async with (
        WebhookSink(KEY, SECRET) as sink,
        running_emulator(
            keys={KEY: SECRET},
            webhook_urls=[sink.url],
            simulated_workers=[("a", 1)],
            departure_timeout=0.2,
        ) as emu,
    ):
        lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room="w", agent_name="a")
        )
        events = await sink.wait_for(lambda evs: len(evs) >= 3)
        names = [e.event for e in events]
        assert names == ["room_started", "participant_joined", "track_published"]
        joined, published = events[1], events[2]
        assert joined.participant.kind == models.ParticipantInfo.Kind.AGENT
        assert joined.participant.permission.agent
        assert joined.participant.attributes["lk.agent_name"] == "a"
        # track webhooks carry the participant by sid and identity only
        assert published.participant == models.ParticipantInfo(
            sid=joined.participant.sid, identity=joined.participant.identity
        )
        assert published.track.source == models.TrackSource.MICROPHONE
        assert published.room == models.Room(sid=joined.room.sid, name="w")
        # the deliveries say whom each event is about (the e2e benchmark's evidence)
        await wait_until(lambda: len(emu.webhooks.deliveries) >= 3)
        about = [(d["event"], d["participant"], d["participant_kind"])
                 for d in list(emu.webhooks.deliveries)[:3]]  # fmt: skip
        assert about == [
            ("room_started", None, None),
            ("participant_joined", joined.participant.identity, "AGENT"),
            ("track_published", joined.participant.identity, "AGENT"),
        ]

        identity = joined.participant.identity
        await lk.room.remove_participant(api.RoomParticipantIdentity(room="w", identity=identity))
        events = await sink.wait_for(lambda evs: len(evs) >= 6, within=5)
        assert [e.event for e in events[3:]] == [
            "track_unpublished",
            "participant_left",
            "room_finished",
        ]
        assert events[4].participant.state == models.ParticipantInfo.State.DISCONNECTED
        assert all(not r.error for r in sink.received)
        await lk.aclose()

        # headers and token as the real server sends them
        first = sink.received[0]
        assert first.headers["Content-Type"] == "application/webhook+json"
        token = first.headers["Authorization"]
        assert not token.startswith("Bearer")
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        assert set(claims) == {"iss", "exp", "nbf", "iat", "sha256"}
        digest = base64.b64encode(hashlib.sha256(first.body.encode()).digest()).decode()
        assert claims["sha256"] == digest and claims["iss"] == KEY


async def test_tampered_body_fails_verification() -> None:
    async with (
        WebhookSink(KEY, SECRET) as sink,
        running_emulator(keys={KEY: SECRET}, webhook_urls=[sink.url]) as emu,
    ):
        lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
        await lk.room.create_room(api.CreateRoomRequest(name="t"))
        await lk.aclose()
        await sink.wait_for(lambda evs: len(evs) == 1)
        received = sink.received[0]
        receiver = api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))
        receiver.receive(received.body, received.headers["Authorization"])  # the original verifies
        tampered = json.loads(received.body)
        tampered["room"]["name"] = "other"
        with pytest.raises(Exception, match="hash mismatch"):
            receiver.receive(json.dumps(tampered), received.headers["Authorization"])
        wrong_secret = api.WebhookReceiver(api.TokenVerifier(KEY, "q" * 40))
        with pytest.raises(jwt.InvalidSignatureError):
            wrong_secret.receive(received.body, received.headers["Authorization"])


async def test_failed_deliveries_are_retried() -> None:
    async with (
        WebhookSink(KEY, SECRET) as sink,
        running_emulator(
            keys={KEY: SECRET}, webhook_urls=[sink.url], webhook_backoff_s=0.01
        ) as emu,
    ):
        sink.fail_next(2, status=500)
        lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
        await lk.room.create_room(api.CreateRoomRequest(name="retry"))
        await lk.aclose()
        await sink.wait_for(lambda evs: [e.event for e in evs] == ["room_started"])
        assert [r.error for r in sink.received] == ["answered 500", "answered 500", ""]
        await wait_until(lambda: emu.webhooks.deliveries)
        delivery = emu.webhooks.deliveries[-1]
        assert (delivery["attempts"], delivery["status"]) == (3, 200)


def test_senders_shard_as_the_real_server() -> None:
    # livekit-server's URLNotifier: 10 workers, keyed by FNV-1a (32 bits) of the room name.
    assert EmulatorConfig().webhook_senders == 10
    assert [fnv1a_32(b""), fnv1a_32(b"a"), fnv1a_32(b"foobar")] == [
        0x811C9DC5,
        0xE40C292C,
        0xBF9CF968,
    ]


def _rooms_on_shards(senders: int) -> tuple[str, str, str]:
    """Two room names on one sender and a third on another."""
    names = [f"room-{i}" for i in range(100)]
    first = names[0]
    same = next(
        n for n in names[1:] if fnv1a_32(n.encode()) % senders == fnv1a_32(b"room-0") % senders
    )
    other = next(
        n for n in names[1:] if fnv1a_32(n.encode()) % senders != fnv1a_32(b"room-0") % senders
    )
    return first, same, other


async def test_slow_receiver_queues_behind_its_sender_only() -> None:
    """Each sender waits for the answer before its next event (as the real server's workers):
    a slow receiver makes events queue behind their sender, and the deliveries say so."""
    async with (
        WebhookSink(KEY, SECRET) as sink,
        running_emulator(keys={KEY: SECRET}, webhook_urls=[sink.url]) as emu,
    ):
        sink.answer_delay_s = 0.2
        first, same, other = _rooms_on_shards(emu.config.webhook_senders)
        lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
        for name in (first, same, other):
            await lk.room.create_room(api.CreateRoomRequest(name=name))
        await lk.aclose()
        await wait_until(lambda: len(emu.webhooks.deliveries) == 3)
        by_room = {d["room"]: d for d in emu.webhooks.deliveries}
        assert all(d["took_ms"] >= 190 for d in by_room.values())
        assert by_room[first]["queued_ms"] < 100
        assert by_room[same]["queued_ms"] >= 150  # behind the first on its sender
        assert by_room[other]["queued_ms"] < 100  # another sender: not held
        # when each POST started (wall clock): the one held behind its sender started later
        assert by_room[same]["sent_at"] - by_room[first]["sent_at"] >= 0.15
        assert all(d["participant_kind"] is None for d in by_room.values())  # room events
        # when its body was written: after the POST started, long before the slow answer
        for delivery in by_room.values():
            answered_at = delivery["sent_at"] + delivery["took_ms"] / 1000
            assert delivery["sent_at"] <= delivery["posted_at"] <= answered_at - 0.15


async def test_a_full_sender_queue_drops_events_and_says_how_many() -> None:
    """As livekit's URLNotifier (queue_size 100, DropWhenFull): an event that finds its
    sender's queue full is dropped, and the next event sent carries ``numDropped``."""
    async with (
        WebhookSink(KEY, SECRET) as sink,
        running_emulator(
            keys={KEY: SECRET}, webhook_urls=[sink.url], webhook_senders=1, webhook_queue_size=2
        ) as emu,
    ):
        sink.answer_delay_s = 0.3
        lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
        for i in range(6):  # one in flight, two queued, three dropped
            await lk.room.create_room(api.CreateRoomRequest(name=f"burst-{i}"))
        await lk.aclose()
        assert emu.webhooks.stats["overflowed"] == 3
        sink.answer_delay_s = 0.0
        events = await sink.wait_for(lambda events: len(events) == 3, within=5)
        assert [e.room.name for e in events] == ["burst-0", "burst-1", "burst-2"]
        # burst-0 left before the drops; the next one sent after them carries their count
        assert [e.num_dropped for e in events] == [0, 3, 0]


def test_webhook_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="webhook_queue_size"):
        EmulatorConfig(keys={KEY: SECRET}, webhook_queue_size=0)


async def test_room_finished_after_empty_timeout() -> None:
    async with (
        WebhookSink(KEY, SECRET) as sink,
        running_emulator(keys={KEY: SECRET}, webhook_urls=[sink.url], empty_timeout=0.2) as emu,
    ):
        lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room="e", agent_name="x")
        )
        events = await sink.wait_for(
            lambda evs: "room_finished" in [e.event for e in evs], within=3
        )
        assert [e.event for e in events] == ["room_started", "room_finished"]
        assert "e" not in emu.state.rooms
        with pytest.raises(api.TwirpError) as err:
            await lk.agent_dispatch.list_dispatch("e")
        assert err.value.code == "unavailable"
        await lk.aclose()


async def test_room_finished_after_departure_timeout_not_before() -> None:
    async with running_emulator(
        keys={KEY: SECRET}, simulated_workers=[("a", 1)], departure_timeout=0.3, empty_timeout=0.05
    ) as emu:
        lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room="d", agent_name="a")
        )
        room = emu.state.rooms["d"]
        await wait_until(lambda: room.participants)
        # the empty timeout does not apply once somebody joined
        await asyncio.sleep(0.15)
        assert "d" in emu.state.rooms
        [identity] = list(room.participants)
        await lk.room.remove_participant(api.RoomParticipantIdentity(room="d", identity=identity))
        assert "d" in emu.state.rooms
        await wait_until(lambda: "d" not in emu.state.rooms, within=2)
        await lk.aclose()
        names = [e["event"] for e in emu.state.events if e["room"] == "d"]
        assert names[-2:] == ["participant_left", "room_finished"]
