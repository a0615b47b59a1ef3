"""The webhook decoder against protobuf's own parser, on a real server's recorded webhooks, and
the cached LiveKit call tokens."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from google.protobuf.json_format import Parse
from livekit import api

from dispatcher.livekit_auth import CachedAuthHeaders
from dispatcher.signals import Signal, SignalKind, Source, from_webhook, webhook_decoder

GOLDEN = Path(__file__).resolve().parents[3] / "emulator" / "tests" / "golden" / "webhooks"
SECRET = "secret-0123456789abcdef0123456789abcdef"


def _reference(event: api.WebhookEvent) -> Signal | None:
    """What the decoder must give, written against protobuf's types."""
    room, participant = event.room.name, event.participant
    if not room:
        return None
    if event.event == "room_finished":
        return Signal(SignalKind.ROOM_FINISHED, Source.WEBHOOK, room=room)
    if event.event in ("participant_joined", "participant_left"):
        if participant.kind != api.ParticipantInfo.Kind.AGENT:
            return None
        attrs = participant.attributes
        return Signal(
            SignalKind.JOINED if event.event == "participant_joined" else SignalKind.AGENT_LEFT,
            Source.WEBHOOK,
            room=room,
            agent_identity=participant.identity,
            participant_sid=participant.sid,
            agent_name=attrs.get("lk.agent_name", attrs.get("lk.agent.name", "")),
        )
    if event.event == "track_published" and event.track.type == api.TrackType.AUDIO:
        return Signal(
            SignalKind.SPEAKING,
            Source.WEBHOOK,
            room=room,
            agent_identity=participant.identity,
            participant_sid=participant.sid,
        )
    return None


def _golden_bodies() -> list[str]:
    bodies = []
    for path in sorted(GOLDEN.glob("*.json")):
        bodies.extend(json.dumps(hook["body"]) for hook in json.loads(path.read_text())["webhooks"])
    return bodies


def test_decoder_agrees_with_protobuf_on_recorded_webhooks() -> None:
    bodies = _golden_bodies()
    assert len(bodies) > 10
    kinds = set()
    for body in bodies:
        expected = _reference(Parse(body, api.WebhookEvent(), ignore_unknown_fields=True))
        assert from_webhook(webhook_decoder.decode(body)) == expected, body
        kinds.add(expected.kind if expected else None)
    # the recordings hold every kind that moves a dispatch, and ones that move nothing
    assert {SignalKind.JOINED, SignalKind.SPEAKING, SignalKind.AGENT_LEFT, None} <= kinds


@pytest.mark.parametrize(
    ("kind", "track_type", "expected"),
    [
        (4, 1, None),  # enum numbers (also valid protojson): an agent's video track
        ("AGENT", "VIDEO", None),
        ("AGENT", 0, SignalKind.SPEAKING),
        ("STANDARD", "AUDIO", SignalKind.SPEAKING),  # matched to the join later, by identity
    ],
)
def test_decoder_reads_enum_names_and_numbers(
    kind: object, track_type: object, expected: SignalKind | None
) -> None:
    body = {
        "event": "track_published",
        "room": {"name": "r"},
        "participant": {"identity": "a", "sid": "PA_1", "kind": kind},
        "track": {"type": track_type},
    }
    signal = from_webhook(webhook_decoder.decode(json.dumps(body)))
    assert (signal.kind if signal else None) == expected
    joined = {**body, "event": "participant_joined"}
    signal = from_webhook(webhook_decoder.decode(json.dumps(joined)))
    assert (signal is not None) == (kind in ("AGENT", 4))


def test_decoder_reads_num_dropped_as_protobuf_does() -> None:
    body = json.dumps({"event": "room_started", "room": {"name": "r"}, "numDropped": 3})
    parsed = Parse(body, api.WebhookEvent(), ignore_unknown_fields=True)
    assert webhook_decoder.decode(body).num_dropped == parsed.num_dropped == 3
    assert webhook_decoder.decode(json.dumps({"event": "room_started"})).num_dropped == 0


def test_auth_headers_signed_once_per_grant_set_and_renewed() -> None:
    headers = CachedAuthHeaders("devkey", SECRET, reuse_seconds=0.2)
    admin_a = headers(api.VideoGrants(room_admin=True, room="a"))
    assert headers(api.VideoGrants(room_admin=True, room="a")) is admin_a
    admin_b = headers(api.VideoGrants(room_admin=True, room="b"))
    create = headers(api.VideoGrants(room_create=True))
    assert headers.signed == 3
    claims = api.TokenVerifier("devkey", SECRET).verify(admin_b["authorization"][7:])
    assert claims.video.room_admin and claims.video.room == "b"
    raw = jwt.decode(create["authorization"][7:], SECRET, algorithms=["HS256"])
    assert raw["video"]["roomCreate"] is True and "roomAdmin" not in raw["video"]
    assert raw["iss"] == "devkey"
    assert 0 < raw["exp"] - time.time() <= 600
    time.sleep(0.25)
    assert headers(api.VideoGrants(room_admin=True, room="a")) is not admin_a
    assert headers.signed == 4


async def test_auth_headers_cache_is_bounded_and_installs_on_services() -> None:
    headers = CachedAuthHeaders("devkey", SECRET, max_cached=2)
    for room in ("a", "b", "c"):
        headers(api.VideoGrants(room_admin=True, room=room))
    assert len(headers._cache) == 2
    lk = api.LiveKitAPI("http://127.0.0.1:1", "devkey", SECRET)
    headers.install(lk.room, lk.agent_dispatch)
    assert lk.room._auth_header(api.VideoGrants(room_list=True)) == headers(
        api.VideoGrants(room_list=True)
    )
    with pytest.raises(TypeError):
        headers.install(object())
    await lk.aclose()
