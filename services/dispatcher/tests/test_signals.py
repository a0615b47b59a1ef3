"""The three signal sources, each alone, and webhook authentication."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

import aiohttp
from harness import AGENT, SECRET, harness, register_worker
from livekit import api
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.lifecycle import DispatchState, FailureReason
from agentline.schema import WorkerEvent, WorkerEventKind
from agentline.webhook_stats import read_webhook_stats
from agentline.worker_events import WorkerEventPublisher


def _transitions(h, state: str, source: str) -> float:  # type: ignore[no-untyped-def]
    for metric in h.dispatcher.metrics.registry.collect():
        if metric.name == "dispatcher_transitions":
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels == {
                    "state": state,
                    "source": source,
                }:
                    return float(sample.value)
    return 0.0


def _signed(body: str, secret: str = SECRET) -> str:
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return api.AccessToken("devkey", secret).with_sha256(digest).to_jwt()


async def _post_webhook(port: int, body: str, token: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/webhooks/livekit",
            data=body,
            headers={"Authorization": token, "Content-Type": "application/webhook+json"},
        ) as response,
    ):
        return response.status


def _agent_joined_body(room: str, identity: str = "agent-forged") -> str:
    return json.dumps(
        {
            "event": "participant_joined",
            "room": {"name": room},
            "participant": {"sid": "PA_forged", "identity": identity, "kind": "AGENT"},
            "id": "EV_forged",
        }
    )


async def test_forged_and_tampered_webhooks_are_refused(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, workers=(), join_timeout_seconds=5) as h:
        await register_worker(redis_client, keys)
        await h.emu.admin.add_simulated_worker(AGENT, capacity=5, join=False)
        dispatch_id = await h.submit()
        record = await h.wait_state(dispatch_id, [DispatchState.ASSIGNED], within=3)
        body = _agent_joined_body(record.room)
        assert await _post_webhook(h.port, body, _signed(body, "x" * 40)) == 401  # forged
        tampered = body.replace("agent-forged", "agent-other")
        assert await _post_webhook(h.port, tampered, _signed(body)) == 401  # body changed
        assert await _post_webhook(h.port, body, "") == 401  # unsigned
        ignored = json.dumps({"event": "room_started", "room": {"name": record.room}})
        assert await _post_webhook(h.port, ignored, _signed(ignored, "x" * 40)) == 401
        assert await _post_webhook(h.port, ignored, _signed(body)) == 401  # hash mismatch
        assert await _post_webhook(h.port, ignored, _signed(ignored)) == 200
        await asyncio.sleep(0.1)
        after = await h.store.get(dispatch_id)
        assert after is not None and after.state is DispatchState.ASSIGNED
        assert after.version == record.version
        await h.dispatcher.webhook_stats.flush()
        stats = await read_webhook_stats(redis_client, keys)  # what `agentline doctor` reads
        assert stats.bad_count == 5 and stats.last_bad_error  # the doctor flags these
        # ...while a correctly signed one is applied
        assert await _post_webhook(h.port, body, _signed(body)) == 200
        # applied just after the answer (webhook_queue), not by polling (5 s interval here)
        joined = await h.wait_state(dispatch_id, [DispatchState.JOINED], within=1)
        assert joined.agent_identity == "agent-forged"


async def test_webhooks_livekit_dropped_are_counted(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, workers=()) as h:
        body = json.dumps({"event": "room_started", "room": {"name": "r"}, "numDropped": 4})
        assert await _post_webhook(h.port, body, _signed(body)) == 200
        registry = h.dispatcher.metrics.registry
        dropped = registry.get_sample_value("dispatcher_webhooks_dropped_by_livekit_total")
        assert dropped == 4


async def test_worker_events_alone_drive_the_stages(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(
        redis_client, redis_url, keys, workers=(), poll_interval_seconds=5.0,
        join_timeout_seconds=5, assign_timeout_seconds=5,
    ) as h:  # fmt: skip
        await register_worker(redis_client, keys)
        await h.emu.admin.webhooks(drop=True)
        dispatch_id = await h.submit()
        record = await h.wait_state(dispatch_id, [DispatchState.DISPATCHED], within=3)
        publisher = WorkerEventPublisher(redis_client, keys)
        for kind in (
            WorkerEventKind.ACCEPTED,
            WorkerEventKind.JOINED,
            WorkerEventKind.AUDIO_PUBLISHED,
        ):
            await publisher.publish(
                WorkerEvent(
                    kind=kind,
                    worker_id="w1",
                    agent_name=AGENT,
                    job_id="AJ_1",
                    dispatch_id=dispatch_id,
                    room=record.room,
                    agent_identity="agent-AJ_1",
                )
            )
        speaking = await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=2)
        assert speaking.worker_id == "w1" and speaking.agent_identity == "agent-AJ_1"
        assert await h.states_seen(dispatch_id) == [
            "requested", "dispatching", "dispatched", "assigned", "joined", "speaking",
        ]  # fmt: skip
        assert _transitions(h, "speaking", "worker") == 1


async def test_polling_alone_reaches_speaking(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, join_timeout_seconds=3) as h:
        await h.emu.admin.webhooks(drop=True)
        dispatch_id = await h.submit()
        record = await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=4)
        assert record.agent_identity.startswith("agent-")
        assert _transitions(h, "speaking", "poll") == 1
        assert _transitions(h, "speaking", "webhook") == 0


async def test_room_closed_before_join_is_room_gone(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys, workers=(), join_timeout_seconds=5) as h:
        await register_worker(redis_client, keys)
        await h.emu.admin.add_simulated_worker(AGENT, capacity=5, join_delay_s=3)
        dispatch_id = await h.submit()
        record = await h.wait_state(dispatch_id, [DispatchState.ASSIGNED], within=3)
        async with api.LiveKitAPI(h.emu.http_url, "devkey", SECRET) as lk:
            await lk.room.delete_room(api.DeleteRoomRequest(room=record.room))
        failed = await h.wait_terminal(dispatch_id, within=3)
        assert failed.state is DispatchState.FAILED and failed.reason is FailureReason.ROOM_GONE


async def test_room_finished_after_speaking_is_ended(
    redis_client: Redis, redis_url: str, keys: Keys
) -> None:
    async with harness(redis_client, redis_url, keys) as h:
        dispatch_id = await h.submit()
        record = await h.wait_state(dispatch_id, [DispatchState.SPEAKING], within=3)
        async with api.LiveKitAPI(h.emu.http_url, "devkey", SECRET) as lk:
            await lk.room.delete_room(api.DeleteRoomRequest(room=record.room))
        ended = await h.wait_terminal(dispatch_id, within=3)
        assert ended.state is DispatchState.ENDED and ended.reason is None
        assert await redis_client.get(keys.room_dispatch(record.room)) is None
