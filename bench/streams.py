"""Redis stream primitives: publish → consume → ack throughput in one process, and the latency
they add at a steady rate (p50/p99)."""

from __future__ import annotations

import asyncio
import time
import uuid

from agentline.keys import DISPATCHER_GROUP, Keys
from agentline.redis_conn import EmbeddedRedis, delete_namespace, make_client, ping
from agentline.streams import StreamConsumer, StreamPublisher
from bench.common import summarize_ms, write_results

THROUGHPUT_ENTRIES = 20_000
STEADY_RATE_PER_S = 500
STEADY_SECONDS = 4.0


async def _throughput(publisher: StreamPublisher, consumer: StreamConsumer) -> float:
    done = asyncio.Event()
    consumed = 0

    async def consume() -> None:
        nonlocal consumed
        while consumed < THROUGHPUT_ENTRIES:
            entries = await consumer.read(count=200, block_ms=100)
            if entries:
                await consumer.ack(*[e.entry_id for e in entries])
                consumed += len(entries)
        done.set()

    started = time.perf_counter()
    consumer_task = asyncio.create_task(consume())
    for start in range(0, THROUGHPUT_ENTRIES, 100):  # 100 publishers in flight at a time
        await asyncio.gather(*(publisher.publish({"n": str(i)}) for i in range(start, start + 100)))
    await done.wait()
    await consumer_task
    return THROUGHPUT_ENTRIES / (time.perf_counter() - started)


async def _steady_latency(publisher: StreamPublisher, consumer: StreamConsumer) -> list[float]:
    latencies: list[float] = []
    total = int(STEADY_RATE_PER_S * STEADY_SECONDS)
    interval = 1 / STEADY_RATE_PER_S

    async def consume() -> None:
        while len(latencies) < total:
            entries = await consumer.read(count=50, block_ms=200)
            now = time.perf_counter()
            for entry in entries:
                latencies.append(now - float(entry.fields["t"]))
            if entries:
                await consumer.ack(*[e.entry_id for e in entries])

    consumer_task = asyncio.create_task(consume())
    start = time.perf_counter()
    for i in range(total):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await publisher.publish({"t": repr(time.perf_counter())})
    await asyncio.wait_for(consumer_task, timeout=30)
    return latencies


async def run() -> dict[str, object]:
    url = "redis://127.0.0.1:6379/0"
    embedded: EmbeddedRedis | None = None
    if not await ping(url):
        embedded = EmbeddedRedis()
        url = await embedded.start()
    redis = make_client(url)
    keys = Keys(namespace=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        publisher = StreamPublisher(redis, keys.requests)
        consumer = StreamConsumer(
            redis, keys.requests, DISPATCHER_GROUP, "bench", keys.dead_letters
        )
        await consumer.ensure_group()
        per_second = await _throughput(publisher, consumer)
        latencies = await _steady_latency(publisher, consumer)
        figures = {
            "redis": "embedded valkey" if embedded else url,
            "publish_consume_ack_per_s": round(per_second),
            "steady_rate_per_s": STEADY_RATE_PER_S,
            "added_latency": summarize_ms(latencies),
        }
        write_results("streams", figures)
        return figures
    finally:
        await delete_namespace(redis, keys)
        await redis.aclose()
        if embedded:
            await embedded.stop()


if __name__ == "__main__":
    asyncio.run(run())
