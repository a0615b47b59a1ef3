"""Every RoomService and AgentDispatchService method, through livekit-api's LiveKitAPI
(protobuf) and as JSON, with LiveKit's authentication and Twirp errors."""

from __future__ import annotations

import pytest
from livekit import api
from livekit.protocol import models

from livekit_emulator.testing import RunningEmulator, server_token, twirp_call, wait_until

ROOM = "RoomService"
DISPATCH = "AgentDispatchService"


async def test_room_service_through_livekit_api(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    room = await lkapi.room.create_room(
        api.CreateRoomRequest(name="crud", empty_timeout=30, metadata="m")
    )
    assert room.sid.startswith("RM_") and room.name == "crud" and room.metadata == "m"
    assert room.empty_timeout == 30 and room.departure_timeout == 20
    assert [c.mime for c in room.enabled_codecs][:3] == ["audio/PCMU", "audio/PCMA", "audio/opus"]

    listed = await lkapi.room.list_rooms(api.ListRoomsRequest())
    assert [r.sid for r in listed.rooms] == [room.sid]
    assert (await lkapi.room.list_rooms(api.ListRoomsRequest(names=["nope"]))).rooms == []

    updated = await lkapi.room.update_room_metadata(
        api.UpdateRoomMetadataRequest(room="crud", metadata="new")
    )
    assert updated.metadata == "new"

    assert (
        await lkapi.room.list_participants(api.ListParticipantsRequest(room="crud"))
    ).participants == []
    livekit_emulator.add_simulated_worker("a", capacity=1)
    await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(room="crud", agent_name="a")
    )
    r = livekit_emulator.state.rooms["crud"]
    await wait_until(lambda: r.participants)
    identity = next(iter(r.participants))
    p = await lkapi.room.get_participant(
        api.RoomParticipantIdentity(room="crud", identity=identity)
    )
    assert p.kind == models.ParticipantInfo.Kind.AGENT
    await lkapi.room.remove_participant(api.RoomParticipantIdentity(room="crud", identity=identity))
    assert (
        await lkapi.room.list_participants(api.ListParticipantsRequest(room="crud"))
    ).participants == []

    with pytest.raises(api.TwirpError) as err:
        await lkapi.room.get_participant(api.RoomParticipantIdentity(room="crud", identity="x"))
    assert (err.value.status, err.value.code) == (404, "not_found")

    await lkapi.room.delete_room(api.DeleteRoomRequest(room="crud"))
    assert (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms == []
    with pytest.raises(api.TwirpError) as err:
        await lkapi.room.delete_room(api.DeleteRoomRequest(room="crud"))
    assert (err.value.status, err.value.code) == (404, "not_found")


async def test_unimplemented_methods_answer_unimplemented(lkapi: api.LiveKitAPI) -> None:
    with pytest.raises(api.TwirpError) as err:
        await lkapi.room.send_data(api.SendDataRequest(room="r", data=b"x"))
    assert (err.value.status, err.value.code) == (501, "unimplemented")


async def test_dispatch_service_through_livekit_api(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    d = await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(room="d", agent_name="x", metadata="meta")
    )
    assert (d.agent_name, d.room, d.metadata) == ("x", "d", "meta")
    listed = await lkapi.agent_dispatch.list_dispatch("d")
    assert sorted(x.agent_name for x in listed) == ["", "x"]
    assert (await lkapi.agent_dispatch.get_dispatch(d.id, "d")).id == d.id
    deleted = await lkapi.agent_dispatch.delete_dispatch(d.id, "d")
    assert deleted.id == d.id
    assert [x.agent_name for x in await lkapi.agent_dispatch.list_dispatch("d")] == [""]
    with pytest.raises(api.TwirpError) as err:
        await lkapi.agent_dispatch.delete_dispatch(d.id, "d")
    assert err.value.code == "not_found"


async def test_json_bodies(livekit_emulator: RunningEmulator) -> None:
    emu = livekit_emulator
    emu.add_simulated_worker("x", capacity=1)
    tok = server_token(emu.api_key, emu.api_secret, room="j")
    reply = await twirp_call(emu.http_url, ROOM, "CreateRoom", {"name": "j"}, token=tok)
    assert (reply.status, reply.content_type) == (200, "application/json")
    body = reply.json()
    assert body["name"] == "j" and body["version"] is None and body["num_participants"] == 0
    reply = await twirp_call(emu.http_url, ROOM, "ListRooms", {"names": ["j"]}, token=tok)
    assert [r["name"] for r in reply.json()["rooms"]] == ["j"]
    reply = await twirp_call(emu.http_url, ROOM, "ListParticipants", {"room": "j"}, token=tok)
    assert reply.json() == {"participants": []}
    reply = await twirp_call(
        emu.http_url, ROOM, "UpdateRoomMetadata", {"room": "j", "metadata": "x"}, token=tok
    )
    assert reply.json()["metadata"] == "x"
    reply = await twirp_call(
        emu.http_url, ROOM, "GetParticipant", {"room": "j", "identity": "nobody"}, token=tok
    )
    assert reply.status == 404 and reply.json()["code"] == "not_found"
    reply = await twirp_call(
        emu.http_url, ROOM, "RemoveParticipant", {"room": "j", "identity": "nobody"}, token=tok
    )
    assert reply.status == 404
    reply = await twirp_call(
        emu.http_url, DISPATCH, "CreateDispatch", {"room": "j", "agentName": "x"}, token=tok
    )
    created = reply.json()
    assert created["agent_name"] == "x" and created["restart_policy"] == "JRP_ON_FAILURE"
    await wait_until(lambda: emu.agents_in_room("j"))
    reply = await twirp_call(emu.http_url, DISPATCH, "ListDispatch", {"room": "j"}, token=tok)
    dispatches = sorted(reply.json()["agent_dispatches"], key=lambda d: d["agent_name"])
    assert [d["agent_name"] for d in dispatches] == ["", "x"]
    [job] = dispatches[1]["state"]["jobs"]
    assert job["state"]["status"] == "JS_RUNNING" and job["type"] == "JT_ROOM"
    identity = job["state"]["participant_identity"]
    reply = await twirp_call(
        emu.http_url, ROOM, "GetParticipant", {"room": "j", "identity": identity}, token=tok
    )
    assert reply.json()["kind"] == "AGENT" and reply.json()["tracks"][0]["source"] == "MICROPHONE"
    reply = await twirp_call(
        emu.http_url, ROOM, "RemoveParticipant", {"room": "j", "identity": identity}, token=tok
    )
    assert (reply.status, reply.json()) == (200, {})
    reply = await twirp_call(
        emu.http_url,
        DISPATCH,
        "DeleteDispatch",
        {"room": "j", "dispatch_id": created["id"]},
        token=tok,
    )
    assert reply.json()["id"] == created["id"]
    reply = await twirp_call(emu.http_url, ROOM, "DeleteRoom", {"room": "j"}, token=tok)
    assert (reply.status, reply.json()) == (200, {})


async def test_protobuf_content_type_is_answered_in_kind(livekit_emulator: RunningEmulator) -> None:
    emu = livekit_emulator
    tok = server_token(emu.api_key, emu.api_secret)
    req = api.ListRoomsRequest().SerializeToString()
    reply = await twirp_call(
        emu.http_url, ROOM, "ListRooms", req, token=tok, content_type="application/protobuf"
    )
    assert (reply.status, reply.content_type) == (200, "application/protobuf")
    assert api.ListRoomsResponse.FromString(reply.body).rooms == []


async def test_no_token_is_unauthenticated(livekit_emulator: RunningEmulator) -> None:
    reply = await twirp_call(livekit_emulator.http_url, ROOM, "ListRooms", {})
    assert (reply.status, reply.content_type) == (401, "application/json")
    assert reply.json() == {"code": "unauthenticated", "msg": "permissions denied"}


async def test_wrong_secret_is_plain_401_before_twirp(livekit_emulator: RunningEmulator) -> None:
    emu = livekit_emulator
    bad = api.LiveKitAPI(emu.http_url, emu.api_key, "x" * 40)
    with pytest.raises(api.TwirpError) as err:
        await bad.room.list_rooms(api.ListRoomsRequest())
    await bad.aclose()
    # livekit-api cannot read a Twirp code from a plain-text body.
    assert (err.value.status, err.value.code) == (401, "unknown")
    reply = await twirp_call(
        emu.http_url, ROOM, "ListRooms", {}, token=server_token(emu.api_key, "y" * 40)
    )
    assert (reply.status, reply.content_type) == (401, "text/plain; charset=utf-8")
    assert (
        reply.text
        == "invalid authorization token: token signature is invalid: signature is invalid"
    )


async def test_unknown_key_is_plain_401(livekit_emulator: RunningEmulator) -> None:
    emu = livekit_emulator
    reply = await twirp_call(
        emu.http_url, ROOM, "ListRooms", {}, token=server_token("otherkey", emu.api_secret)
    )
    assert (reply.status, reply.text) == (401, "invalid API key: otherkey")


async def test_expired_token_is_plain_401(livekit_emulator: RunningEmulator) -> None:
    emu = livekit_emulator
    token = server_token(emu.api_key, emu.api_secret, ttl_s=-3600)
    reply = await twirp_call(emu.http_url, ROOM, "ListRooms", {}, token=token)
    assert reply.status == 401 and "expired" in reply.text


@pytest.mark.parametrize(
    ("service", "method", "body", "grants"),
    [
        (ROOM, "CreateRoom", {"name": "g"}, {"room_create": False}),
        (ROOM, "DeleteRoom", {"room": "g"}, {"room_create": False}),
        (ROOM, "ListRooms", {}, {"room_list": False}),
        (ROOM, "ListParticipants", {"room": "g"}, {"room_admin": False}),
        (ROOM, "GetParticipant", {"room": "g", "identity": "i"}, {"room_admin": False}),
        (ROOM, "RemoveParticipant", {"room": "g", "identity": "i"}, {"room_admin": False}),
        (ROOM, "UpdateRoomMetadata", {"room": "g"}, {"room_admin": False}),
        (DISPATCH, "CreateDispatch", {"room": "g"}, {"room_admin": False}),
        (DISPATCH, "ListDispatch", {"room": "g"}, {"room_admin": False}),
        (DISPATCH, "DeleteDispatch", {"room": "g"}, {"room_admin": False}),
        # roomAdmin for another room is no grant for this one
        (DISPATCH, "ListDispatch", {"room": "g"}, {"room": "other"}),
    ],
)
async def test_missing_grant_is_refused(
    livekit_emulator: RunningEmulator,
    service: str,
    method: str,
    body: dict[str, str],
    grants: dict[str, object],
) -> None:
    emu = livekit_emulator
    options: dict[str, object] = {"room": "g", **grants}
    token = server_token(emu.api_key, emu.api_secret, **options)  # type: ignore[arg-type]
    reply = await twirp_call(emu.http_url, service, method, body, token=token)
    # The real server answers a missing grant as Twirp "unauthenticated" (golden trace
    # error_list_participants_without_roomadmin.json), not "permission_denied".
    assert (reply.status, reply.json()) == (
        401,
        {"code": "unauthenticated", "msg": "permissions denied"},
    )
    assert "g" not in emu.state.rooms


async def test_missing_grant_through_livekit_api(livekit_emulator: RunningEmulator) -> None:
    emu = livekit_emulator
    token = server_token(emu.api_key, emu.api_secret, room="g", room_admin=False)
    reply = await twirp_call(emu.http_url, DISPATCH, "CreateDispatch", {"room": "g"}, token=token)
    assert reply.status == 401


async def test_routing_and_decoding_errors(livekit_emulator: RunningEmulator) -> None:
    emu = livekit_emulator
    tok = server_token(emu.api_key, emu.api_secret)
    reply = await twirp_call(emu.http_url, ROOM, "NoSuchMethod", {"room": "x"}, token=tok)
    assert reply.status == 404
    assert reply.json() == {
        "code": "bad_route",
        "msg": 'no handler for path "/twirp/livekit.RoomService/NoSuchMethod"',
        "meta": {"twirp_invalid_route": "POST /twirp/livekit.RoomService/NoSuchMethod"},
    }
    reply = await twirp_call(emu.http_url, ROOM, "ListRooms", '{"names": [', token=tok)
    assert (reply.status, reply.json()) == (
        400,
        {"code": "malformed", "msg": "the json request could not be decoded"},
    )
    reply = await twirp_call(
        emu.http_url, ROOM, "ListRooms", b"\xff\xff", token=tok, content_type="application/protobuf"
    )
    assert (reply.status, reply.json()["code"]) == (400, "malformed")
    reply = await twirp_call(
        emu.http_url, ROOM, "ListRooms", "{}", token=tok, content_type="text/plain"
    )
    assert (reply.status, reply.json()["code"]) == (404, "bad_route")


async def test_list_dispatch_of_a_closed_room_is_unavailable(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    await lkapi.room.create_room(api.CreateRoomRequest(name="gone"))
    await lkapi.room.delete_room(api.DeleteRoomRequest(room="gone"))
    with pytest.raises(api.TwirpError) as err:
        await lkapi.agent_dispatch.list_dispatch("gone")
    assert (err.value.status, err.value.code) == (503, "unavailable")
    assert err.value.message == "twirp error unknown: no response from servers"


async def test_create_dispatch_accepts_an_empty_room_name(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    # As the real server: a nameless room is created (validate names before calling).
    d = await lkapi.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(room="", agent_name="a")
    )
    assert d.room == "" and "" in livekit_emulator.state.rooms
