import asyncio

from prometheus_client import CollectorRegistry, generate_latest

from agentline.keys import DISPATCHER_GROUP
from agentline.metrics import StreamBacklogCollector
from agentline.streams import StreamConsumer, StreamPublisher, group_stats


def _consumer(redis_client, keys, name, **kwargs):
    return StreamConsumer(
        redis=redis_client,
        stream=keys.requests,
        group=DISPATCHER_GROUP,
        consumer=name,
        dead_letter_stream=keys.dead_letters,
        **kwargs,
    )


async def test_publish_once_is_idempotent_under_concurrency(redis_client, keys):
    publisher = StreamPublisher(redis_client, keys.requests)
    idem = keys.idempotency("test", "k1")
    results = await asyncio.gather(
        *(publisher.publish_once({"n": str(i)}, idem) for i in range(25))
    )
    assert sum(r.created for r in results) == 1
    assert len({r.entry_id for r in results}) == 1
    assert await redis_client.xlen(keys.requests) == 1


async def test_read_ack_and_group_created_once(redis_client, keys):
    consumer = _consumer(redis_client, keys, "c1")
    await consumer.ensure_group()
    await consumer.ensure_group()  # idempotent
    publisher = StreamPublisher(redis_client, keys.requests)
    ids = [await publisher.publish({"n": str(i)}) for i in range(5)]
    got = await consumer.read(count=3)
    assert [e.entry_id for e in got] == ids[:3]
    assert await consumer.ack(*[e.entry_id for e in got]) == 3
    rest = await consumer.read(count=10)
    assert [e.fields["n"] for e in rest] == ["3", "4"]
    stats = await group_stats(redis_client, keys.requests, DISPATCHER_GROUP, keys.dead_letters)
    assert stats.pending == 2 and stats.lag == 0 and stats.length == 5


async def test_crashed_consumer_entries_taken_over(redis_client, keys):
    crashed = _consumer(redis_client, keys, "crashed", claim_idle_ms=50)
    live = _consumer(redis_client, keys, "live", claim_idle_ms=50)
    await crashed.ensure_group()
    publisher = StreamPublisher(redis_client, keys.requests)
    for i in range(3):
        await publisher.publish({"n": str(i)})
    taken = await crashed.read(count=10)
    assert len(taken) == 3  # and then it dies without acking
    assert await live.claim_stale(count=10, force=True) == []  # not idle long enough yet
    await asyncio.sleep(0.08)
    claimed = await live.claim_stale(count=10, force=True)
    assert sorted(e.fields["n"] for e in claimed) == ["0", "1", "2"]
    assert all(e.deliveries == 2 for e in claimed)
    pending = await redis_client.xpending_range(keys.requests, DISPATCHER_GROUP, "-", "+", 10)
    assert {p["consumer"] for p in pending} == {"live"}


async def test_claim_is_paced(redis_client, keys):
    consumer = _consumer(redis_client, keys, "c", claim_idle_ms=0, claim_interval=60)
    await consumer.ensure_group()
    await StreamPublisher(redis_client, keys.requests).publish({"n": "1"})
    await consumer.read(count=1)
    assert len(await consumer.claim_stale(count=10)) == 1
    assert await consumer.claim_stale(count=10) == []  # within the interval: no call


async def test_dead_letter_after_max_deliveries(redis_client, keys):
    consumer = _consumer(redis_client, keys, "c", claim_idle_ms=0, max_deliveries=3)
    await consumer.ensure_group()
    await StreamPublisher(redis_client, keys.requests).publish({"dispatch_id": "dsp_x"})
    await consumer.read(count=1)  # delivery 1
    for expected in (2, 3):
        again = await consumer.claim_stale(count=10, force=True)
        assert [e.deliveries for e in again] == [expected]
    assert await consumer.claim_stale(count=10, force=True) == []  # delivery 4 > 3
    dead = await redis_client.xrange(keys.dead_letters)
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields["dispatch_id"] == "dsp_x"
    assert fields["deliveries"] == "4" and "delivered 4 times" in fields["dead_letter_reason"]
    stats = await group_stats(redis_client, keys.requests, DISPATCHER_GROUP, keys.dead_letters)
    assert stats.pending == 0 and stats.dead_letters == 1


async def test_own_pending_after_restart(redis_client, keys):
    consumer = _consumer(redis_client, keys, "pod-a")
    await consumer.ensure_group()
    await StreamPublisher(redis_client, keys.requests).publish({"n": "1"})
    await consumer.read(count=1)
    restarted = _consumer(redis_client, keys, "pod-a")
    again = await restarted.read_own_pending(count=10)
    assert [e.fields["n"] for e in again] == ["1"] and again[0].deliveries == 2  # re-reading counts


async def test_backlog_collector_reads_at_scrape_time(redis_client, keys, redis_url):
    registry = CollectorRegistry()
    registry.register(StreamBacklogCollector(redis_url, keys, "dispatcher_"))
    consumer = _consumer(redis_client, keys, "c", claim_idle_ms=0, max_deliveries=1)
    await consumer.ensure_group()
    publisher = StreamPublisher(redis_client, keys.requests)
    for i in range(4):
        await publisher.publish({"n": str(i)})
    await consumer.read(count=2)

    def value(name: str) -> float | None:
        return registry.get_sample_value(name)

    text = (await asyncio.to_thread(generate_latest, registry)).decode()
    assert "dispatcher_stream_lag 2.0" in text
    assert value("dispatcher_stream_pending") == 2
    assert value("dispatcher_dead_letters") == 0
    await consumer.claim_stale(count=10, force=True)  # second delivery > 1: dead letters
    assert value("dispatcher_dead_letters") == 2
    assert value("dispatcher_stream_pending") == 0
    assert value("dispatcher_redis_up") == 1


def test_backlog_collector_reports_redis_down(keys):
    registry = CollectorRegistry()
    registry.register(StreamBacklogCollector("redis://127.0.0.1:1/0", keys, "x_"))
    assert registry.get_sample_value("x_redis_up") == 0
