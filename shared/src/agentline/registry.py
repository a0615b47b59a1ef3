"""The worker registry: live agent workers per agent_name, refreshed by their heartbeats.

A sorted set holds each worker's expiry; a hash per worker holds its details and expires on
its own, so a crashed worker disappears within one TTL without anyone cleaning up.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from redis.asyncio import Redis

from agentline.ids import now_ms
from agentline.keys import Keys
from agentline.schema import AgentNameSummary, WorkerInfo

# KEYS: the agent_name's capacity hash, the set of agent names admission knows; ARGV: worker id, "capacity:expiry:draining", channel,
# agent name. Publishes the agent name when the worker is new to the hash or its capacity or
# draining flag changed (not on a mere refresh of the expiry).
_CAPACITY_BEAT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local function shape(v) return string.gsub(v, ':%d+:', ':') end
if (not old) or shape(old) ~= shape(ARGV[2]) then
  redis.call('SADD', KEYS[2], ARGV[4])
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return 1
end
return 0
"""


class WorkerRegistry:
    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: float = 6.0) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = int(ttl_seconds * 1000)
        self._capacity_beat = redis.register_script(_CAPACITY_BEAT)

    async def heartbeat(self, info: WorkerInfo) -> None:
        at = now_ms()
        fields: dict[Any, Any] = {**info.to_fields(), "heartbeat_at_ms": str(at)}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.worker(info.worker_id), mapping=fields)
            pipe.pexpire(self.keys.worker(info.worker_id), self.ttl_ms)
            pipe.zadd(self.keys.workers, {info.worker_id: at + self.ttl_ms})
            # The admission script reads capacity per agent_name from this hash; a change is
            # published so that dispatchers admit waiting dispatches at once.
            await self._capacity_beat(
                keys=[self.keys.agent_capacity(info.agent_name), self.keys.admission_agents],
                args=[
                    info.worker_id,
                    f"{info.capacity}:{at + self.ttl_ms}:{1 if info.draining else 0}",
                    self.keys.capacity_changed,
                    info.agent_name,
                ],
                client=pipe,
            )
            await pipe.execute()

    async def deregister(self, worker_id: str, agent_name: str | None = None) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            if agent_name is not None:
                pipe.hdel(self.keys.agent_capacity(agent_name), worker_id)
            pipe.delete(self.keys.worker(worker_id))
            pipe.zrem(self.keys.workers, worker_id)
            await pipe.execute()

    async def live_workers(self) -> list[WorkerInfo]:
        at = now_ms()
        await self.redis.zremrangebyscore(self.keys.workers, "-inf", at)
        ids = await self.redis.zrangebyscore(self.keys.workers, at, "+inf")
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker_id in ids:
                pipe.hgetall(self.keys.worker(_text(worker_id)))
            rows = await pipe.execute()
        return [WorkerInfo.from_fields(_decode(row)) for row in rows if row]

    async def summary(self) -> dict[str, AgentNameSummary]:
        """Live workers summed per agent_name."""
        grouped: dict[str, list[WorkerInfo]] = defaultdict(list)
        for worker in await self.live_workers():
            grouped[worker.agent_name].append(worker)
        return {
            name: AgentNameSummary(
                agent_name=name,
                workers=len(workers),
                capacity=sum(w.capacity for w in workers if not w.draining),
                active_jobs=sum(w.active_jobs for w in workers),
                draining_workers=sum(1 for w in workers if w.draining),
            )
            for name, workers in sorted(grouped.items())
        }

    async def served_agent_names(self) -> list[str]:
        return sorted({w.agent_name for w in await self.live_workers() if not w.draining})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(row: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in row.items()}


class InstanceHeartbeats:
    """Liveness of service instances (dispatcher replicas, API pods), one sorted set each.

    Consumer-group idle times cannot tell a live dispatcher from a dead one (an empty read
    does not register a consumer on Redis 7.0), so instances say so themselves.
    """

    def __init__(self, redis: Redis, keys: Keys, service: str, ttl_seconds: float = 15.0):
        self.redis = redis
        self.key = keys.service_instances(service)
        self.ttl_ms = int(ttl_seconds * 1000)

    async def beat(self, instance: str) -> None:
        await self.redis.zadd(self.key, {instance: now_ms() + self.ttl_ms})

    async def leave(self, instance: str) -> None:
        await self.redis.zrem(self.key, instance)

    async def alive(self) -> list[str]:
        at = now_ms()
        await self.redis.zremrangebyscore(self.key, "-inf", at)
        return sorted(_text(i) for i in await self.redis.zrangebyscore(self.key, at, "+inf"))
