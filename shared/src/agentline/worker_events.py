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
        fields = event.to_fields()
        fields.setdefault("at_ms", str(now_ms()))
        if fields["at_ms"] == "0":
            fields["at_ms"] = str(now_ms())
        entry = await self.redis.xadd(
            self.keys.worker_events,
            fields,  # type: ignore[arg-type]
            maxlen=WORKER_EVENTS_MAXLEN,
            approximate=True,
        )
        return entry.decode() if isinstance(entry, bytes) else str(entry)
