"""``/rtc`` signalling checked message by message on loopback (no media flows: aiortc on the
client side only offers, which is enough to publish), against the real server's recordings
(golden ``rtc-signal/``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription
from livekit import api
from livekit.protocol import models, rtc

from livekit_emulator.netns import NetNamespace
from livekit_emulator.rtc.testing import participant_token
from livekit_emulator.testing import RunningEmulator, running_emulator

ROOM = "sig-room"
KEY, SECRET = "devkey", "rtc-test-secret-of-at-least-32-characters"


class SignalClient:
    """A bare signalling client: the WebSocket and the decoded responses."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received: list[rtc.SignalResponse] = []

    async def send(self, **message: Any) -> None:
        await self.ws.send_bytes(rtc.SignalRequest(**message).SerializeToString())

    async def next(self, kind: str, within: float = 5.0) -> Any:
        """The next response of ``kind`` (others are kept in ``received``)."""
        async with asyncio.timeout(within):
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise AssertionError(f"socket ended while waiting for {kind}: {msg.type}")
                response = rtc.SignalResponse.FromString(msg.data)
                self.received.append(response)
                if response.WhichOneof("message") == kind:
                    return getattr(response, kind)

    async def closed(self, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not self.ws.closed:
                msg = await self.ws.receive()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self.received.append(rtc.SignalResponse.FromString(msg.data))
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    async with running_emulator(keys={KEY: SECRET}) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def join(
    http: aiohttp.ClientSession, emu: RunningEmulator, identity: str, **token: Any
) -> tuple[SignalClient, rtc.JoinResponse]:
    jwt = participant_token(KEY, SECRET, ROOM, identity, **token)
    ws = await http.ws_connect(
        f"{emu.ws_url}/rtc?auto_subscribe=1&protocol=17",
        headers={"Authorization": f"Bearer {jwt}"},
    )
    client = SignalClient(ws)
    return client, await client.next("join")


async def test_tokens_are_checked_before_the_upgrade(
    emu: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    good = participant_token(KEY, SECRET, ROOM, "probe")
    forged = participant_token(KEY, "another-secret-of-at-least-32-characters!", ROOM, "x")
    no_join = (
        api.AccessToken(KEY, SECRET)
        .with_identity("x")
        .with_grants(api.VideoGrants(room_list=True))
        .to_jwt()
    )
    cases = [
        ("/rtc/validate", {"access_token": good}, {}, 200, "success"),
        ("/rtc/validate", {}, {"Authorization": f"Bearer {good}"}, 200, "success"),
        ("/rtc/validate", {}, {}, 401, "no permissions to access the room"),
        (
            "/rtc/validate",
            {"access_token": forged},
            {},
            401,
            "invalid authorization token: token signature is invalid: signature is invalid",
        ),
        ("/rtc/validate", {"access_token": no_join}, {}, 401, "no permissions to access the room"),
        ("/rtc/v1/validate", {"access_token": good}, {}, 400, "join_request is required"),
        ("/rtc", {}, {}, 401, "no permissions to access the room"),
        ("/rtc", {"access_token": forged}, {}, 401, None),
    ]
    for path, query, headers, status, text in cases:
        async with http.get(f"{emu.http_url}{path}", params=query, headers=headers) as resp:
            body = await resp.text()
            assert resp.status == status, (path, query, headers, body)
            if text is not None:
                assert body == text, (path, body)
    # A WebSocket upgrade with a bad token is refused with 401, not upgraded.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{emu.ws_url}/rtc?access_token={forged}")
    assert refused.value.status == 401
    # v1 is answered 404: the SDK falls back to v0 at once.
    with pytest.raises(aiohttp.WSServerHandshakeError) as v1:
        await http.ws_connect(f"{emu.ws_url}/rtc/v1?access_token={good}")
    assert v1.value.status == 404
    assert emu.state.rooms == {}


async def test_join_response_updates_ping_and_leave(
    emu: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    first, joined = await join(http, emu, "caller", name="Caller")
    assert joined.room.name == ROOM and joined.room.sid.startswith("RM_")
    assert joined.participant.identity == "caller" and joined.participant.name == "Caller"
    assert joined.participant.sid.startswith("PA_")
    assert joined.participant.kind == models.ParticipantInfo.Kind.STANDARD
    assert joined.participant.permission.can_publish and joined.participant.permission.can_subscribe
    assert not joined.subscriber_primary
    assert joined.ping_interval > 0 and joined.ping_timeout > joined.ping_interval
    assert (joined.server_info.version, joined.server_info.protocol) == ("1.13.5", 17)
    assert list(joined.other_participants) == []
    assert not joined.ice_servers  # nothing outside is reachable: host candidates only

    agent, agent_joined = await join(http, emu, "agent-1", kind="agent")
    assert agent_joined.participant.kind == models.ParticipantInfo.Kind.AGENT
    assert [p.identity for p in agent_joined.other_participants] == ["caller"]
    update = await first.next("update")
    assert [(p.identity, p.state) for p in update.participants] == [
        ("agent-1", models.ParticipantInfo.State.ACTIVE)
    ]
    assert emu.agents_in_room(ROOM) == ["agent-1"]

    lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
    try:
        listed = await lk.room.list_participants(api.ListParticipantsRequest(room=ROOM))
    finally:
        await lk.aclose()
    assert sorted(p.identity for p in listed.participants) == ["agent-1", "caller"]

    await first.send(ping_req=rtc.Ping(timestamp=1234, rtt=7))
    pong = await first.next("pong_resp")
    assert pong.last_ping_timestamp == 1234 and pong.timestamp > 0

    await agent.send(leave=rtc.LeaveRequest(reason=models.DisconnectReason.CLIENT_INITIATED))
    assert (await agent.next("leave")).reason == models.DisconnectReason.CLIENT_INITIATED
    await agent.closed()
    gone = await first.next("update")
    assert [(p.identity, p.state) for p in gone.participants] == [
        ("agent-1", models.ParticipantInfo.State.DISCONNECTED)
    ]
    assert emu.agents_in_room(ROOM) == []
    events = [(e["event"], e.get("participant")) for e in emu.state.events]
    assert [e for e, _ in events] == [
        "room_started",
        "participant_joined",
        "participant_joined",
        "participant_left",
    ], events
    await first.ws.close()


async def test_removed_participant_is_told_to_leave(
    emu: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    client, _ = await join(http, emu, "caller")
    lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
    try:
        await lk.room.remove_participant(api.RoomParticipantIdentity(room=ROOM, identity="caller"))
    finally:
        await lk.aclose()
    leave = await client.next("leave")
    assert leave.reason == models.DisconnectReason.PARTICIPANT_REMOVED
    assert leave.action == rtc.LeaveRequest.Action.DISCONNECT
    await client.closed()
    assert emu.state.rooms[ROOM].participants == {}


@pytest.fixture
async def netns_emu(netns: NetNamespace) -> AsyncIterator[RunningEmulator]:
    async with running_emulator(keys={KEY: SECRET}, host=netns.server_ip) as running:
        yield running


async def test_publish_mute_and_unpublish_by_renegotiation(
    netns_emu: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    # Peer connections gather candidates on every interface: inside the test's namespace
    # those are its own private addresses only.
    emu = netns_emu
    watcher, _ = await join(http, emu, "watcher")
    client, _ = await join(http, emu, "talker")
    await watcher.next("update")  # talker joined
    pc = RTCPeerConnection()
    tone = AudioStreamTrack()
    try:
        sender = pc.addTrack(tone)
        await client.send(
            add_track=rtc.AddTrackRequest(
                cid=tone.id,
                name="mic",
                type=models.TrackType.AUDIO,
                source=models.TrackSource.MICROPHONE,
            )
        )
        published = await client.next("track_published")
        assert published.cid == tone.id and published.track.sid.startswith("TR_")
        sid = published.track.sid

        await pc.setLocalDescription(await pc.createOffer())
        await client.send(offer=rtc.SessionDescription(type="offer", sdp=pc.localDescription.sdp))
        answer = await client.next("answer")
        assert "a=candidate:" in answer.sdp and "typ host" in answer.sdp
        assert "opus" in answer.sdp
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))

        update = await watcher.next("update")
        [info] = update.participants
        assert info.identity == "talker" and [t.sid for t in info.tracks] == [sid]
        assert info.tracks[0].mid == pc.getTransceivers()[0].mid
        room = emu.state.rooms[ROOM]
        assert [t.sid for t in room.participants["talker"].tracks.values()] == [sid]

        await client.send(mute=rtc.MuteTrackRequest(sid=sid, muted=True))
        muted = await watcher.next("update")
        assert muted.participants[0].tracks[0].muted

        # The client stops sending the track and renegotiates: the track is unpublished.
        pc.getTransceivers()[0].direction = "inactive"
        sender.replaceTrack(None)
        await pc.setLocalDescription(await pc.createOffer())
        await client.send(offer=rtc.SessionDescription(type="offer", sdp=pc.localDescription.sdp))
        await client.next("answer")
        unpublished = await client.next("track_unpublished")
        assert unpublished.track_sid == sid
        cleared = await watcher.next("update")
        assert list(cleared.participants[0].tracks) == []
        names = [e["event"] for e in emu.state.events]
        assert names.count("track_published") == 1 and names.count("track_unpublished") == 1
    finally:
        await pc.close()
        await client.ws.close()
        await watcher.ws.close()


async def test_bad_requests_do_not_end_the_session(
    emu: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    client, _ = await join(http, emu, "clumsy")
    await client.ws.send_bytes(b"\xff\x00not a protobuf")
    await client.send(offer=rtc.SessionDescription(type="offer", sdp="v=0\r\nthis is not sdp"))
    await client.send(trickle=rtc.TrickleRequest(candidateInit="{not json"))
    await client.send(
        trickle=rtc.TrickleRequest(
            candidateInit='{"candidate": "candidate:garbage", "sdpMid": "0"}'
        )
    )
    await client.send(answer=rtc.SessionDescription(type="answer", sdp="v=0"))  # none asked for
    await client.send(ping_req=rtc.Ping(timestamp=42))
    pong = await client.next("pong_resp")
    assert pong.last_ping_timestamp == 42
    assert "clumsy" in emu.state.rooms[ROOM].participants
    await client.ws.close()


async def test_attributes_update_is_acknowledged_and_announced(
    emu: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    watcher, _ = await join(http, emu, "watcher")
    agent, _ = await join(http, emu, "agent-1", kind="agent", can_update_metadata=True)
    await watcher.next("update")  # agent joined
    await agent.send(
        update_metadata=rtc.UpdateParticipantMetadata(
            attributes={"lk.agent.state": "speaking"}, request_id=5
        )
    )
    ack = await agent.next("request_response")
    assert (ack.request_id, ack.reason) == (5, rtc.RequestResponse.Reason.OK)
    update = await watcher.next("update")
    assert update.participants[0].attributes["lk.agent.state"] == "speaking"
    assert emu.state.rooms[ROOM].participants["agent-1"].attributes == {
        "lk.agent.state": "speaking"
    }

    # Without canUpdateOwnMetadata the request is refused and nothing changes.
    await watcher.send(
        update_metadata=rtc.UpdateParticipantMetadata(metadata="sneaky", request_id=6)
    )
    refused = await watcher.next("request_response")
    assert (refused.request_id, refused.reason) == (6, rtc.RequestResponse.Reason.NOT_ALLOWED)
    assert emu.state.rooms[ROOM].participants["watcher"].metadata == ""
    await agent.ws.close()
    await watcher.ws.close()


async def test_socket_lost_without_leave_means_participant_left(
    emu: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    watcher, _ = await join(http, emu, "watcher")
    client, joined = await join(http, emu, "vanishing")
    await watcher.next("update")
    await client.ws.close()  # no leave request: the client died or lost its network
    gone = await watcher.next("update")
    assert [(p.sid, p.state) for p in gone.participants] == [
        (joined.participant.sid, models.ParticipantInfo.State.DISCONNECTED)
    ]
    assert "vanishing" not in emu.state.rooms[ROOM].participants
    left = [e for e in emu.state.events if e["event"] == "participant_left"]
    assert len(left) == 1, left
    await watcher.ws.close()


async def test_emulator_stops_promptly_with_sessions_open(http: aiohttp.ClientSession) -> None:
    async with running_emulator(keys={KEY: SECRET}) as running:
        client, _ = await join(http, running, "stayer")
        started = asyncio.get_running_loop().time()
    assert asyncio.get_running_loop().time() - started < 3.0
    await client.closed()
    assert client.ws.closed


async def test_delete_room_disconnects_everybody(
    emu: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    one, _ = await join(http, emu, "one")
    two, _ = await join(http, emu, "two")
    lk = api.LiveKitAPI(emu.http_url, KEY, SECRET)
    try:
        await lk.room.delete_room(api.DeleteRoomRequest(room=ROOM))
    finally:
        await lk.aclose()
    for client in (one, two):
        leave = await client.next("leave")
        assert leave.reason == models.DisconnectReason.ROOM_DELETED
        await client.closed()
    names = [e["event"] for e in emu.state.events]
    assert names.count("participant_left") == 2 and names[-1] == "room_finished", names
    assert ROOM not in emu.state.rooms
    assert emu.emulator.rtc.members == {}


async def test_hidden_participants_stay_out_of_sight(
    emu: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    visible, _ = await join(http, emu, "visible")
    hidden, _ = await join(http, emu, "recorder", hidden=True)
    late, late_join = await join(http, emu, "late")
    assert [p.identity for p in late_join.other_participants] == ["visible"]
    update = await visible.next("update")  # the late joiner's, not the recorder's
    assert [p.identity for p in update.participants] == ["late"]
    assert "recorder" in emu.state.rooms[ROOM].participants  # it is in the room all the same
    for client in (visible, hidden, late):
        await client.ws.close()
