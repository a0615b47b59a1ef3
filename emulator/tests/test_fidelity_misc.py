"""Fidelity, misc scenario of the golden traces: room CRUD, errors, a dispatch to a FULL
worker and one to an agent name nobody serves (../shared/livekit-golden/twirp/, webhooks/
misc_crud_emptyroom_full_unserved.json, worker-protocol/full_worker_golden-full.json)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from livekit import api
from livekit.protocol import agent

from livekit_emulator import golden
from livekit_emulator.testing import running_emulator, server_token, twirp_call, wait_until
from livekit_emulator.webhook_sink import WebhookSink
from livekit_emulator.worker_client import RawWorker

GOLDEN = Path(__file__).parent / "golden"
KEY, SECRET = "devkey", "golden-fidelity-secret-0123456789abcdef"


def load(name: str) -> Any:
    return golden.load(GOLDEN, name)


async def replay(http_url: str, name: str, token: str | None) -> tuple[dict[str, Any], Any]:
    """Send the golden request again; return (golden record, our decoded reply)."""
    g = load(f"twirp/{name}.json")
    req = g["request"]
    service, method = req["path"].split("/")[-2:]
    body = req["body"]
    raw = body.get("raw_text") if isinstance(body, dict) and "raw_text" in body else None
    reply = await twirp_call(
        http_url,
        service.removeprefix("livekit."),
        method,
        raw if raw is not None else body,
        token=token,
    )
    decoded = reply.json() if reply.content_type == "application/json" else {"raw_text": reply.text}
    golden.same_reply(g, reply.status, reply.content_type, decoded)
    return g, decoded


async def test_misc_scenario_matches_the_golden_traces() -> None:
    async with (
        WebhookSink(KEY, SECRET) as sink,
        running_emulator(
            keys={KEY: SECRET}, webhook_urls=[sink.url], departure_timeout=3, empty_timeout=8
        ) as emu,
    ):
        url = emu.http_url

        def tok(room: str = "", **grants: bool) -> str:
            return server_token(KEY, SECRET, room=room, **grants)

        async with RawWorker(emu.ws_url, KEY, SECRET) as full:
            await full.register("golden-full", status=agent.WorkerStatus.WS_FULL, load=0.8)

            await replay(url, "create_room", tok("golden-crud"))
            await replay(url, "list_rooms_json", tok())
            # ListRooms in protobuf: the same message, decoded
            g = load("twirp/list_rooms_protobuf.json")
            reply = await twirp_call(
                url,
                "RoomService",
                "ListRooms",
                base64.b64decode(g["request"]["body"]["raw_base64"]),
                token=tok(),
                content_type="application/protobuf",
            )
            assert (reply.status, reply.content_type) == (200, "application/protobuf")
            ours = MessageToDict(
                api.ListRoomsResponse.FromString(reply.body), preserving_proto_field_name=True
            )
            golden.same(g["response"]["body"]["decoded"], ours)

            await replay(url, "list_participants_empty_room", tok("golden-crud"))
            await replay(url, "delete_room", tok("golden-crud"))
            await replay(url, "delete_room_nonexistent", tok("golden-does-not-exist"))
            await replay(url, "error_no_authorization", None)
            await replay(
                url,
                "error_wrong_secret",
                server_token(KEY, "wrong-secret-wrong-secret-wrong-secret"),
            )
            await replay(
                url,
                "error_list_participants_without_roomadmin",
                tok("golden-crud", room_admin=False),
            )
            await replay(url, "error_unknown_method", tok("x"))
            await replay(url, "error_malformed_json", tok())
            await replay(url, "error_create_dispatch_empty_room", tok(""))
            await replay(url, "create_dispatch_full_worker", tok("golden-full-room"))
            await replay(url, "create_dispatch_unserved_agent_name", tok("golden-unserved-room"))

            for name in ("list_dispatch_full_worker_0", "list_dispatch_unserved_0"):
                g = load(f"twirp/{name}.json")
                room = g["request"]["body"]["room"]
                reply = await twirp_call(
                    url, "AgentDispatchService", "ListDispatch", {"room": room}, token=tok(room)
                )
                assert reply.status == g["response"]["status"]
                golden.same(
                    golden.by_agent_name(g["response"]["body"]), golden.by_agent_name(reply.json())
                )

            # the FULL worker was never asked; the unserved dispatch went nowhere
            await asyncio.sleep(0.1)
            assert full.messages.empty()
            reasons = {j.agent_name: j.dropped_reason for j in emu.state.dropped_jobs}
            assert (
                reasons["golden-full"] == reasons["nobody-serves-this"] == "no worker is available"
            )

        # webhooks: golden-crud started and finished (deleted), then one room_started per
        # room the dispatches created, in the same order
        g = load("webhooks/misc_crud_emptyroom_full_unserved.json")["webhooks"]
        expected = [
            w
            for w in g
            if w["body"]["event"] == "room_started"
            or w["body"]["room"].get("name") == "golden-crud"
        ]
        events = await sink.wait_for(lambda evs: len(evs) >= len(expected))
        assert [e.event for e in events] == [w["body"]["event"] for w in expected]
        for want, got in zip(expected, sink.received, strict=False):
            assert got.headers["Content-Type"] == want["content_type"]
            golden.same(want["body"], json.loads(got.body))


async def test_closed_rooms_answer_unavailable() -> None:
    """After the empty timeout closed the room: ListDispatch 503 and ListRooms empty."""
    async with running_emulator(keys={KEY: SECRET}, empty_timeout=0.1) as emu:
        token = server_token(KEY, SECRET, room="golden-full-room")
        await twirp_call(
            emu.http_url,
            "AgentDispatchService",
            "CreateDispatch",
            {"room": "golden-full-room", "agent_name": "golden-full"},
            token=token,
        )
        await wait_until(lambda: not emu.state.rooms, within=2)
        await replay(emu.http_url, "list_dispatch_full_worker_2", token)
        await replay(emu.http_url, "list_rooms_after_full_and_unserved", server_token(KEY, SECRET))
