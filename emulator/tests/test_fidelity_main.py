"""Fidelity, main and room-configuration scenarios of the golden traces, with real timing:
the worker protocol frame by frame, ListDispatch over the job's life, ListParticipants and the
agent's webhooks (../shared/livekit-golden/: twirp/, webhooks/main_dispatch_agent_caller.json,
worker-protocol/main_worker_golden-agent.json, worker-protocol/room_config_dispatch.json)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jwt
from google.protobuf.json_format import MessageToDict
from livekit.protocol import agent

from livekit_emulator import golden
from livekit_emulator.model import Track
from livekit_emulator.rooms import participant_from_claims
from livekit_emulator.testing import (
    RunningEmulator,
    running_emulator,
    server_token,
    twirp_call,
    wait_until,
)
from livekit_emulator.webhook_sink import WebhookSink
from livekit_emulator.worker_client import RawWorker

GOLDEN = Path(__file__).parent / "golden"
KEY, SECRET = "devkey", "golden-fidelity-secret-0123456789abcdef"


def load(name: str) -> Any:
    return golden.load(GOLDEN, name)


def frames(name: str, kind: str, direction: str = "s2c") -> list[dict[str, Any]]:
    events = load(f"worker-protocol/{name}.json")["events"]
    return [
        e["msg"][kind] for e in events if e.get("dir") == direction and kind in e.get("msg", {})
    ]


def as_dict(msg: Any) -> dict[str, Any]:
    return MessageToDict(msg, preserving_proto_field_name=True)


def token_claims(token: str) -> dict[str, Any]:
    return {
        "redacted_jwt": {
            "jwt_header": jwt.get_unverified_header(token),
            "jwt_claims": jwt.decode(token, SECRET, algorithms=["HS256"]),
        }
    }


class Driver:
    def __init__(self, emu: RunningEmulator) -> None:
        self.emu = emu

    async def call(self, method: str, body: dict[str, Any], room: str = "") -> tuple[int, Any]:
        service = "AgentDispatchService" if "Dispatch" in method else "RoomService"
        reply = await twirp_call(
            self.emu.http_url, service, method, body, token=server_token(KEY, SECRET, room=room)
        )
        assert reply.content_type == "application/json"
        return reply.status, reply.json()

    async def check(self, name: str, **override: Any) -> Any:
        g = load(f"twirp/{name}.json")
        body = {**g["request"]["body"], **override}
        method = g["request"]["path"].rsplit("/", 1)[-1]
        status, ours = await self.call(method, body, body.get("room", ""))
        assert status == g["response"]["status"]
        if method == "ListDispatch":
            golden.same(golden.by_agent_name(g["response"]["body"]), golden.by_agent_name(ours))
        else:
            golden.same(g["response"]["body"], ours)
        return ours

    async def poll_until_running(self, room: str, since: float) -> float:
        """Poll ListDispatch every 250 ms until a job is JS_RUNNING: seconds since ``since``."""
        loop = asyncio.get_running_loop()
        while True:
            _, body = await self.call("ListDispatch", {"room": room}, room)
            if any(
                j["state"]["status"] == "JS_RUNNING"
                for d in body["agent_dispatches"]
                for j in d["state"]["jobs"]
            ):
                return loop.time() - since
            await asyncio.sleep(0.25)


async def test_main_scenario_matches_the_golden_traces() -> None:
    async with (
        WebhookSink(KEY, SECRET) as sink,
        running_emulator(
            keys={KEY: SECRET},
            webhook_urls=[sink.url],
            departure_timeout=3,
            empty_timeout=8,
            real_timing=True,
        ) as emu,
        RawWorker(emu.ws_url, KEY, SECRET) as worker,
    ):
        drive = Driver(emu)
        register = await worker.register("golden-agent")
        golden.same(frames("main_worker_golden-agent", "register")[0], as_dict(register))

        created = asyncio.get_running_loop().time()
        dispatch_id = (await drive.check("create_dispatch_room_absent"))["id"]
        await drive.check("list_dispatch_right_after_create")

        availability = (await worker.recv("availability")).availability
        golden.same(frames("main_worker_golden-agent", "availability")[0], as_dict(availability))
        await worker.answer(availability.job)
        assignment = (await worker.recv("assignment")).assignment
        want = frames("main_worker_golden-agent", "assignment")[0]
        golden.same(want["job"], as_dict(assignment.job))
        golden.same(want["token"], token_claims(assignment.token))
        assert set(as_dict(assignment)) == set(want) == {"job", "token"}  # no url
        await worker.update_job(availability.job.id, agent.JobStatus.JS_RUNNING)

        # the agent joins with its token and publishes (what its WebRTC session would do)
        room = emu.state.rooms["golden-room"]
        participant = participant_from_claims(
            jwt.decode(assignment.token, SECRET, algorithms=["HS256"]), "test"
        )
        emu.rooms.join(room, participant)
        emu.rooms.publish(room, participant, Track(sid="TR_AMx", name="agent-tone", mid="7"))

        # the job shows in ListDispatch only ~5 s later (21st poll at 250 ms on the real server)
        elapsed = await drive.poll_until_running("golden-room", created)
        assert 4.9 <= elapsed <= 6.5, elapsed
        await drive.check("list_dispatch_job_running")

        _, listed = await drive.call("ListParticipants", {"room": "golden-room"}, "golden-room")
        want_agent = load("twirp/list_participants_agent_and_caller.json")["response"]["body"][
            "participants"
        ][0]
        golden.same(want_agent, listed["participants"][0])

        # the agent leaves: JobTermination; the listed job stays JS_RUNNING
        emu.rooms.leave(room, participant)
        termination = (await worker.recv("termination")).termination
        assert termination.job_id == availability.job.id
        await worker.update_job(availability.job.id, agent.JobStatus.JS_SUCCESS)
        await drive.check("list_dispatch_after_job_end_0")
        await drive.check("delete_dispatch", dispatch_id=dispatch_id)
        await drive.check("list_dispatch_after_delete")

        await wait_until(lambda: "golden-room" not in emu.state.rooms, within=5)
        await drive.check("list_rooms_after_finish")

        # the agent's webhooks, in order (the caller's are left out: it joins over WebRTC)
        caller = {"caller"}
        want_hooks = [
            w
            for w in load("webhooks/main_dispatch_agent_caller.json")["webhooks"]
            if w["body"].get("participant", {}).get("identity") not in caller
        ]
        await sink.wait_for(lambda evs: len(evs) >= len(want_hooks))
        assert [r.event.event for r in sink.received if r.event] == [
            w["body"]["event"] for w in want_hooks
        ]
        counts = frozenset({"numParticipants", "numPublishers"})  # the real server's lag behind
        for want_hook, got in zip(want_hooks, sink.received, strict=True):
            assert got.headers["Content-Type"] == want_hook["content_type"]
            assert set(
                jwt.decode(got.headers["Authorization"], SECRET, algorithms=["HS256"])
            ) == set(want_hook["jwt_claims"])
            golden.same(want_hook["body"], json.loads(got.body), drop=counts)


async def test_room_configuration_scenario_matches_the_golden_traces() -> None:
    async with (
        running_emulator(
            keys={KEY: SECRET}, departure_timeout=3, empty_timeout=8, real_timing=True
        ) as emu,
        RawWorker(emu.ws_url, KEY, SECRET) as worker,
    ):
        drive = Driver(emu)
        await worker.register("golden-agent")
        loop = asyncio.get_running_loop()
        start = loop.time()
        await drive.check("create_room_with_agents")
        g = load("twirp/list_dispatch_after_room_config.json")
        _, right_after = await drive.call(
            "ListDispatch", {"room": "golden-roomcfg"}, "golden-roomcfg"
        )
        golden.same(g["right_after_create"]["response"]["body"], right_after)

        availability = (await worker.recv("availability")).availability
        assert 0.1 <= loop.time() - start <= 1.0
        golden.same(frames("room_config_dispatch", "availability")[0], as_dict(availability))
        await worker.answer(availability.job)
        assignment = (await worker.recv("assignment")).assignment
        golden.same(frames("room_config_dispatch", "assignment")[0]["job"], as_dict(assignment.job))
        elapsed = await drive.poll_until_running("golden-roomcfg", start)
        assert 4.9 <= elapsed <= 6.5, elapsed
        _, running = await drive.call("ListDispatch", {"room": "golden-roomcfg"}, "golden-roomcfg")
        golden.same(g["job_running"]["response"]["body"], running)

        # roomcfg-existing: the configuration of an existing room is ignored
        existing = load("twirp/create_room_with_agents_existing_room.json")["exchanges"]
        for step in existing[:-1]:
            body = step["request"]["body"]
            method = step["request"]["path"].rsplit("/", 1)[-1]
            status, ours = await drive.call(method, body, body.get("room", body.get("name", "")))
            assert status == step["response"]["status"]
            golden.same(step["response"]["body"], ours, drop=frozenset({"enabled_codecs"}))
        await asyncio.sleep(0.3)
        assert worker.messages.empty()
