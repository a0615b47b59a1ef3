"""The /agent worker protocol, played frame by frame with a bare protobuf client."""

from __future__ import annotations

import asyncio

import aiohttp
import jwt
import pytest
from livekit import api
from livekit.protocol import agent

from livekit_emulator.rooms import participant_from_claims
from livekit_emulator.testing import RunningEmulator, wait_until
from livekit_emulator.worker_client import RawWorker

RUNNING = agent.JobStatus.JS_RUNNING


def raw(emu: RunningEmulator) -> RawWorker:
    return RawWorker(emu.ws_url, emu.api_key, emu.api_secret)


async def dispatch(lk: api.LiveKitAPI, room: str, agent_name: str, metadata: str = "") -> str:
    d = await lk.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(room=room, agent_name=agent_name, metadata=metadata)
    )
    return d.id


async def test_register_and_ping(livekit_emulator: RunningEmulator) -> None:
    async with raw(livekit_emulator) as w:
        reply = await w.register("a")
        assert reply.worker_id.startswith("AW_")
        assert (reply.server_info.version, reply.server_info.protocol) == ("1.13.5", 17)
        assert reply.server_info.agent_protocol == 1 and reply.server_info.node_id.startswith("ND_")
        await w.send(agent.WorkerMessage(ping=agent.WorkerPing(timestamp=123)))
        pong = (await w.recv("pong")).pong
        assert pong.last_timestamp == 123 and pong.timestamp > 0
        assert livekit_emulator.state.workers[reply.worker_id].agent_name == "a"


async def test_job_offer_accept_and_assignment(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    emu = livekit_emulator
    async with raw(emu) as w:
        await w.register("golden-agent")
        dispatch_id = await dispatch(lkapi, "room1", "golden-agent", "golden-meta")
        job = (await w.recv("availability")).availability.job
        assert (job.room.name, job.metadata, job.dispatch_id) == (
            "room1",
            "golden-meta",
            dispatch_id,
        )
        assert job.state.status == RUNNING and job.state.worker_id == w.worker_id
        assert not job.state.participant_identity
        await w.answer(
            job,
            participant_identity="agent-x",
            participant_name="Agent X",
            participant_metadata="pm",
            participant_attributes={"lk.agent.name": "golden-agent", "k": "v"},
        )
        assignment = (await w.recv("assignment")).assignment
        assert assignment.job.id == job.id and not assignment.HasField("url")
        assert assignment.job.state.participant_identity == "agent-x"
        claims = jwt.decode(assignment.token, emu.api_secret, algorithms=["HS256"])
        assert claims["sub"] == claims["identity"] == "agent-x"
        assert (claims["name"], claims["metadata"], claims["kind"]) == ("Agent X", "pm", "agent")
        assert claims["video"]["roomJoin"] and claims["video"]["room"] == "room1"
        assert claims["video"]["agent"] is True
        assert claims["attributes"] == {
            "lk.agent.name": "golden-agent",
            "k": "v",
            "lk.agent_name": "golden-agent",
        }
        assert claims["exp"] - claims["nbf"] == 3600

        await w.update_job(job.id, RUNNING)
        listed = await lkapi.agent_dispatch.get_dispatch(dispatch_id, "room1")
        assert listed is not None
        [listed_job] = listed.state.jobs
        assert (
            listed_job.state.status == RUNNING
            and listed_job.state.participant_identity == "agent-x"
        )

        # The real server never updates the listed job again, not even when it ends.
        await w.update_job(job.id, agent.JobStatus.JS_SUCCESS)
        await wait_until(lambda: emu.state.jobs[job.id].status == agent.JobStatus.JS_SUCCESS)
        listed = await lkapi.agent_dispatch.get_dispatch(dispatch_id, "room1")
        assert listed is not None and listed.state.jobs[0].state.status == RUNNING
        assert listed.state.jobs[0].state.ended_at == 0
        assert emu.state.jobs[job.id].reported == ["JS_RUNNING", "JS_SUCCESS"]


async def test_worker_of_another_agent_name_never_gets_the_job(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    """The seed's symptom: a worker is registered, CreateDispatch answers OK, and nothing."""
    emu = livekit_emulator
    async with raw(emu) as other, raw(emu) as unnamed:
        await other.register("someone-else")
        await unnamed.register("")
        await dispatch(lkapi, "r", "travel-assistant")
        # the unnamed worker gets the room's default dispatch, never the named one
        default_job = (await unnamed.recv("availability")).availability.job
        assert default_job.agent_name == ""
        await asyncio.sleep(0.1)
        assert other.messages.empty() and unnamed.messages.empty()
        listed = await lkapi.agent_dispatch.list_dispatch("r")
        named = next(d for d in listed if d.agent_name == "travel-assistant")
        assert list(named.state.jobs) == []
        [dropped] = [j for j in emu.state.dropped_jobs if j.agent_name == "travel-assistant"]
        assert dropped.dropped_reason == "no worker is available"


async def test_dropped_job_is_never_retried(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    emu = livekit_emulator
    async with raw(emu) as full:
        await full.register("a", status=agent.WorkerStatus.WS_FULL, load=0.8)
        await dispatch(lkapi, "r", "a")
        await wait_until(lambda: any(j.agent_name == "a" for j in emu.state.dropped_jobs))
        await full.update_status(agent.WorkerStatus.WS_AVAILABLE, 0.0)
        async with raw(emu) as late:
            await late.register("a")
            await asyncio.sleep(0.1)
            assert full.messages.empty() and late.messages.empty()
    listed = await lkapi.agent_dispatch.list_dispatch("r")
    assert all(list(d.state.jobs) == [] for d in listed)


async def test_declined_job_goes_to_the_next_worker(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    async with raw(livekit_emulator) as first, raw(livekit_emulator) as second:
        await first.register("a")
        await second.register("a")
        await dispatch(lkapi, "r", "a")
        job = (await first.recv("availability")).availability.job
        await first.answer(job, available=False)
        job2 = (await second.recv("availability")).availability.job
        assert job2.id == job.id
        await second.answer(job2)
        assert (await second.recv("assignment")).assignment.job.id == job.id


async def test_busiest_available_worker_is_chosen(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    async with raw(livekit_emulator) as idle, raw(livekit_emulator) as busy:
        await idle.register("a")
        await busy.register("a")
        await dispatch(lkapi, "r1", "a")
        job = (await idle.recv("availability")).availability.job
        await idle.answer(job)
        await idle.recv("assignment")
        await idle.update_status(agent.WorkerStatus.WS_AVAILABLE, 0.1, 1)
        await busy.update_status(agent.WorkerStatus.WS_AVAILABLE, 0.5, 0)
        await asyncio.sleep(0.05)
        # the worker with running jobs and the highest load is preferred (bin packing)
        await dispatch(lkapi, "r2", "a")
        job2 = (await idle.recv("availability")).availability.job
        assert job2.room.name == "r2" and busy.messages.empty()


async def test_availability_timeout_loses_the_job(
    livekit_emulator_factory,
    lkapi: api.LiveKitAPI,  # type: ignore[no-untyped-def]
) -> None:
    async with livekit_emulator_factory(availability_timeout=0.3) as emu:
        lk = api.LiveKitAPI(emu.http_url, emu.api_key, emu.api_secret)
        async with raw(emu) as w:
            await w.register("a")
            await dispatch(lk, "r", "a")
            job = (await w.recv("availability")).availability.job
            await asyncio.sleep(0.4)
            await w.answer(job)
            await asyncio.sleep(0.1)
            assert w.messages.empty()
            [dropped] = list(emu.state.dropped_jobs)[-1:]
            assert dropped.dropped_reason == "agent worker availability timeout"
            listed = await lk.agent_dispatch.list_dispatch("r")
            assert all(list(d.state.jobs) == [] for d in listed)
        await lk.aclose()


async def test_closed_socket_fails_running_jobs(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    emu = livekit_emulator
    w = await raw(emu).connect()
    await w.register("a")
    await dispatch(lkapi, "r", "a")
    job = (await w.recv("availability")).availability.job
    await w.answer(job)
    await w.recv("assignment")
    await w.close()
    await wait_until(lambda: w.worker_id not in emu.state.workers)
    assert emu.state.jobs[job.id].status == agent.JobStatus.JS_FAILED
    assert emu.state.jobs[job.id].error == "worker disconnected"


async def test_agent_leaving_sends_job_termination(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    emu = livekit_emulator
    async with raw(emu) as w:
        await w.register("a")
        await dispatch(lkapi, "r", "a")
        job = (await w.recv("availability")).availability.job
        await w.answer(job)
        token = (await w.recv("assignment")).assignment.token
        # the agent joins with its token (as a WebRTC join would), then is removed
        room = emu.state.rooms["r"]
        emu.rooms.join(
            room,
            participant_from_claims(jwt.decode(token, options={"verify_signature": False}), "test"),
        )
        await lkapi.room.remove_participant(
            api.RoomParticipantIdentity(room="r", identity=f"agent-{job.id}")
        )
        assert (await w.recv("termination")).termination.job_id == job.id
        assert emu.state.jobs[job.id].error == "agent worker left the room"


async def test_delete_dispatch_terminates_its_jobs(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI
) -> None:
    async with raw(livekit_emulator) as w:
        await w.register("a")
        dispatch_id = await dispatch(lkapi, "r", "a")
        job = (await w.recv("availability")).availability.job
        await w.answer(job)
        await w.recv("assignment")
        deleted = await lkapi.agent_dispatch.delete_dispatch(dispatch_id, "r")
        assert [j.id for j in deleted.state.jobs] == [job.id]
        assert (await w.recv("termination")).termination.job_id == job.id


async def test_agent_endpoint_authentication(livekit_emulator: RunningEmulator) -> None:
    emu = livekit_emulator
    url = emu.http_url + "/agent"
    no_agent = (
        api.AccessToken(emu.api_key, emu.api_secret)
        .with_grants(api.VideoGrants(room_join=True, room="r"))
        .with_identity("x")
        .to_jwt()
    )
    with_agent = (
        api.AccessToken(emu.api_key, emu.api_secret)
        .with_grants(api.VideoGrants(agent=True))
        .to_jwt()
    )
    bad = api.AccessToken(emu.api_key, "z" * 40).with_grants(api.VideoGrants(agent=True)).to_jwt()
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers={"Authorization": f"Bearer {with_agent}"}) as r:
            assert r.status == 404  # not a WebSocket upgrade
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(url, headers={"Authorization": f"Bearer {no_agent}"})
        assert err.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(url, headers={"Authorization": f"Bearer {bad}"})
        assert err.value.status == 401
