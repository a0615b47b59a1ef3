"""The worker-events stream: what our agent workers report about each job."""

from __future__ import annotations

from redis.asyncio import Redis

from agentline.ids import now_ms
from agentline.keys import Keys
from agentline.schema import WorkerEvent

WORKER_EVENTS_MAXLEN = 100_000


class WorkerEventPublisher:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def publish(self, event: WorkerEvent) -> str:
        return (await self.publish_many([event]))[0]

    async def publish_many(self, events: list[WorkerEvent]) -> list[str]:
        """Write events in one round trip (a burst of job requests goes out as one batch)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                fields = event.to_fields()
                if fields.get("at_ms", "0") == "0":
                    fields["at_ms"] = str(now_ms())
                pipe.xadd(
                    self.keys.worker_events,
                    fields,  # type: ignore[arg-type]
                    maxlen=WORKER_EVENTS_MAXLEN,
                    approximate=True,
                )
            entries = await pipe.execute()
        return [e.decode() if isinstance(e, bytes) else str(e) for e in entries]
