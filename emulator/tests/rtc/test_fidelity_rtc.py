"""Signalling against the real server's recordings (golden ``rtc-signal/``): the plain HTTP
answers of the signalling paths, and the JoinResponse and first subscriber offer of the v0
session. Differences kept on purpose (docs/emulator.md, "WebRTC"): no ICE servers,
``subscriber_primary`` false, no ``sif_trailer``, no ``refresh_token``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google.protobuf.json_format import MessageToDict
from livekit import api

from livekit_emulator.rtc.sdp import media_sections
from livekit_emulator.rtc.testing import participant_token
from livekit_emulator.testing import RunningEmulator, running_emulator

GOLDEN = Path(__file__).parent.parent / "golden" / "rtc-signal"
KEY, SECRET = "devkey", "rtc-test-secret-of-at-least-32-characters"
DELIBERATE = {"ice_servers", "subscriber_primary", "sif_trailer"}


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    async with running_emulator(keys={KEY: SECRET}) as running:
        yield running


def _token_for(query: dict[str, Any]) -> str | None:
    """A token like the recorded one (its claims), signed by us or, when the recording shows
    a bad signature, by another secret."""
    recorded = query.get("access_token")
    if recorded is None:
        return None
    claims = recorded["jwt_claims"]
    video = claims["video"]
    token = (
        api.AccessToken(KEY, SECRET)
        .with_identity(claims["sub"])
        .with_grants(
            api.VideoGrants(
                room_join=video.get("roomJoin", False),
                room=video.get("room", ""),
                can_publish=video.get("canPublish"),
                can_subscribe=video.get("canSubscribe"),
                can_publish_data=video.get("canPublishData"),
            )
        )
    )
    return token.to_jwt()


async def test_plain_http_answers_match_the_recording(emu: RunningEmulator) -> None:
    exchanges = golden("http_validate_and_plain_get.json")["exchanges"]
    async with aiohttp.ClientSession() as http:
        for ex in exchanges:
            req, want = ex["request"], ex["response"]
            token = _token_for(req["query"])
            if want["status"] == 401 and "signature" in want["body"]:
                token = participant_token(
                    KEY, "another-secret-of-at-least-32-characters!", "golden-v0", "x"
                )
            params = {"access_token": token} if token else {}
            async with http.get(emu.http_url + req["path"], params=params) as resp:
                body = await resp.text()
                assert resp.status == want["status"], (ex["kind"], body)
                if want["body"]:
                    assert body == want["body"], ex["kind"]
                if want["headers"]["content-type"]:
                    assert resp.headers["Content-Type"] == want["headers"]["content-type"]


async def test_join_response_and_first_subscriber_offer_match_the_recording(
    emu: RunningEmulator,
) -> None:
    from livekit.protocol import rtc

    events = golden("v0_fallback_session.json")["events"]
    s2c = [e["msg"] for e in events if e.get("dir") == "s2c" and e.get("msg")]
    golden_join = next(m["join"] for m in s2c if "join" in m)
    golden_offer = next(m["offer"] for m in s2c if "offer" in m)

    jwt = participant_token(KEY, SECRET, "golden-v0", "v0-caller")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{emu.ws_url}/rtc?access_token={jwt}") as ws,
    ):
        kinds: list[str] = []
        join: Any = None
        offer: Any = None
        while offer is None:
            msg = await ws.receive(timeout=5)
            response = rtc.SignalResponse.FromString(msg.data)
            kind = response.WhichOneof("message")
            kinds.append(kind)
            if kind == "join":
                join = response.join
            elif kind == "offer":
                offer = response.offer
        assert kinds[0] == "join"
        ours = MessageToDict(join, preserving_proto_field_name=True)
        assert set(golden_join) - DELIBERATE <= set(ours), set(golden_join) - set(ours)
        assert set(golden_join["room"]) <= set(ours["room"])
        assert set(golden_join["participant"]) <= set(ours["participant"])
        assert ours["room"]["enabled_codecs"] == golden_join["room"]["enabled_codecs"]
        assert ours["participant"]["permission"] == golden_join["participant"]["permission"]
        assert ours["server_info"]["version"] == golden_join["server_info"]["version"]
        assert ours["server_info"]["protocol"] == golden_join["server_info"]["protocol"]
        assert ours["fast_publish"] is True
        # The subscriber connection is offered at once, with the server's data channels only.
        sections = media_sections(offer.sdp)
        assert [f"m={s.kind}" for s in sections] == [
            line.split(" ")[0] for line in golden_offer["sdp_summary"]["m_lines"]
        ]
        await ws.close()
