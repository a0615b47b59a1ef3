"""Webhook receipts: the dispatcher records each LiveKit webhook it receives and whether its
signature verified; `agentline doctor` reads them to tell "no webhooks arrive" from "they
arrive signed with another key/secret"."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from agentline.ids import now_ms
from agentline.keys import Keys


@dataclass(frozen=True, slots=True)
class WebhookStats:
    ok_count: int = 0
    bad_count: int = 0
    last_ok_at_ms: int = 0
    last_ok_event: str = ""
    last_bad_at_ms: int = 0
    last_bad_error: str = ""


async def record_webhook(
    redis: Redis, keys: Keys, *, verified: bool, event: str = "", error: str = ""
) -> None:
    at = str(now_ms())
    async with redis.pipeline(transaction=True) as pipe:
        if verified:
            pipe.hincrby(keys.webhook_stats, "ok_count", 1)
            pipe.hset(keys.webhook_stats, mapping={"last_ok_at_ms": at, "last_ok_event": event})
        else:
            pipe.hincrby(keys.webhook_stats, "bad_count", 1)
            pipe.hset(
                keys.webhook_stats, mapping={"last_bad_at_ms": at, "last_bad_error": error[:300]}
            )
        await pipe.execute()


async def read_webhook_stats(redis: Redis, keys: Keys) -> WebhookStats:
    raw = {str(k): str(v) for k, v in (await redis.hgetall(keys.webhook_stats)).items()}
    return WebhookStats(
        ok_count=int(raw.get("ok_count", 0)),
        bad_count=int(raw.get("bad_count", 0)),
        last_ok_at_ms=int(raw.get("last_ok_at_ms", 0)),
        last_ok_event=raw.get("last_ok_event", ""),
        last_bad_at_ms=int(raw.get("last_bad_at_ms", 0)),
        last_bad_error=raw.get("last_bad_error", ""),
    )
