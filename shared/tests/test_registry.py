import asyncio

from agentline.registry import WorkerRegistry
from agentline.schema import WorkerEvent, WorkerEventKind, WorkerInfo
from agentline.worker_events import WorkerEventPublisher


async def test_heartbeats_expire_and_summarise(redis_client, keys):
    registry = WorkerRegistry(redis_client, keys, ttl_seconds=0.3)
    await registry.heartbeat(WorkerInfo("w1", "travel-assistant", capacity=4, active_jobs=1))
    await registry.heartbeat(WorkerInfo("w2", "travel-assistant", capacity=2, active_jobs=2))
    await registry.heartbeat(WorkerInfo("w3", "other", capacity=1, draining=True))
    summary = await registry.summary()
    assert summary["travel-assistant"].workers == 2
    assert summary["travel-assistant"].capacity == 6
    assert summary["travel-assistant"].active_jobs == 3
    assert summary["other"].draining_workers == 1 and summary["other"].capacity == 0
    assert await registry.served_agent_names() == ["travel-assistant"]
    await asyncio.sleep(0.4)
    assert await registry.live_workers() == []
    assert await redis_client.zcard(keys.workers) == 0


async def test_deregister(redis_client, keys):
    registry = WorkerRegistry(redis_client, keys)
    await registry.heartbeat(WorkerInfo("w1", "a", capacity=1))
    await registry.deregister("w1")
    assert await registry.live_workers() == []


async def test_worker_events_round_trip(redis_client, keys):
    publisher = WorkerEventPublisher(redis_client, keys)
    event = WorkerEvent(WorkerEventKind.ACCEPTED, "w1", "a", job_id="AJ_1", dispatch_id="dsp_1")
    await publisher.publish(event)
    rows = await redis_client.xrange(keys.worker_events)
    got = WorkerEvent.from_fields(rows[0][1])
    assert got.kind is WorkerEventKind.ACCEPTED and got.dispatch_id == "dsp_1" and got.at_ms > 0


async def test_webhook_stats_round_trip(redis_client, keys):
    from agentline.webhook_stats import read_webhook_stats, record_webhook

    assert (await read_webhook_stats(redis_client, keys)).ok_count == 0
    await record_webhook(redis_client, keys, verified=True, event="participant_joined")
    await record_webhook(redis_client, keys, verified=False, error="signature mismatch")
    stats = await read_webhook_stats(redis_client, keys)
    assert stats.ok_count == 1 and stats.last_ok_event == "participant_joined"
    assert stats.bad_count == 1 and stats.last_bad_error == "signature mismatch"
    assert stats.last_ok_at_ms > 0 and stats.last_bad_at_ms > 0


async def test_instance_heartbeats_expire(redis_client, keys):
    from agentline.registry import InstanceHeartbeats

    beats = InstanceHeartbeats(redis_client, keys, "dispatcher", ttl_seconds=0.2)
    await beats.beat("pod-a")
    await beats.beat("pod-b")
    await beats.leave("pod-b")
    assert await beats.alive() == ["pod-a"]
    await asyncio.sleep(0.25)
    assert await beats.alive() == []


async def test_heartbeat_publishes_capacity_changes_only(redis_client, keys):
    from agentline.registry import WorkerRegistry
    from agentline.schema import WorkerInfo

    registry = WorkerRegistry(redis_client, keys)
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.capacity_changed)
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    await registry.heartbeat(WorkerInfo("w1", "agent-a", 2))  # new worker
    await registry.heartbeat(WorkerInfo("w1", "agent-a", 2))  # refresh only
    await registry.heartbeat(WorkerInfo("w1", "agent-a", 3))  # capacity raised
    await registry.heartbeat(WorkerInfo("w1", "agent-a", 3, draining=True))
    seen = []
    while (message := await pubsub.get_message(timeout=0.3)) is not None:
        seen.append(message["data"])
    await pubsub.aclose()
    assert seen == ["agent-a", "agent-a", "agent-a"]
