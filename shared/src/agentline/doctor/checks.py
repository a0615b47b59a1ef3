"""The doctor's checks that need only settings and Redis: each returns ✓ or ✗ lines with the
evidence and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from agentline.ids import now_ms
from agentline.keys import DISPATCHER_GROUP, Keys
from agentline.registry import InstanceHeartbeats, WorkerRegistry
from agentline.settings import (
    AgentWorkerSettings,
    CommonSettings,
    DispatcherSettings,
    TokenApiSettings,
    describe_errors,
)
from agentline.streams import group_stats
from agentline.webhook_stats import read_webhook_stats

WEBHOOK_RECENT_MS = 15 * 60 * 1000


@dataclass
class Check:
    section: str
    name: str
    ok: bool
    evidence: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def check_settings() -> list[Check]:
    """Every service's settings as this environment would give them."""
    out: list[Check] = []
    classes: list[type[CommonSettings]] = [
        TokenApiSettings,
        DispatcherSettings,
        AgentWorkerSettings,
    ]
    for cls in classes:
        try:
            cls()
        except ValidationError as error:
            problems = describe_errors(cls, error)
            out.append(
                Check(
                    "settings",
                    f"{cls.service_name} settings",
                    False,
                    "; ".join(problems),
                    "set the named variables (see the README's configuration table)",
                )
            )
        else:
            out.append(Check("settings", f"{cls.service_name} settings", True, "all valid"))
    return out


async def check_redis(redis: Redis, keys: Keys, url: str) -> list[Check]:
    try:
        info = await redis.info("server")
    except (RedisError, OSError) as error:
        return [
            Check(
                "redis",
                "Redis reachable",
                False,
                f"{_safe_url(url)}: {error}",
                "check REDIS_URL and that Redis (7.0+) is running and reachable",
            )
        ]
    version = str(info.get("redis_version", "?"))
    major = int(version.split(".")[0]) if version[:1].isdigit() else 0
    out = [
        Check(
            "redis",
            "Redis reachable",
            major >= 7,
            f"{_safe_url(url)} answers, version {version}",
            "" if major >= 7 else "agentline needs Redis 7.0 or later (XINFO GROUPS lag)",
        )
    ]
    stats = await group_stats(redis, keys.requests, DISPATCHER_GROUP, keys.dead_letters)
    groups = await redis.xinfo_groups(keys.requests) if await redis.exists(keys.requests) else []
    has_group = any(str(g["name"]) == DISPATCHER_GROUP for g in groups)
    out.append(
        Check(
            "redis",
            "dispatch stream and consumer group",
            has_group,
            f"stream {keys.requests}: {stats.length} entries; group '{DISPATCHER_GROUP}' "
            + ("present" if has_group else "missing"),
            "" if has_group else "start the dispatcher: it creates the group on start",
        )
    )
    alive = await InstanceHeartbeats(redis, keys, "dispatcher").alive()
    out.append(
        Check(
            "redis",
            "dispatchers alive",
            bool(alive),
            f"{len(alive)} live: {', '.join(alive)}"
            if alive
            else f"no dispatcher heartbeat; {stats.lag} requests waiting unread",
            ""
            if alive
            else "the dispatcher is down or cannot reach Redis: check its pods and logs",
        )
    )
    out.append(
        Check(
            "redis",
            "backlog",
            stats.dead_letters == 0,
            f"lag {stats.lag}, pending {stats.pending}, dead letters {stats.dead_letters}",
            ""
            if stats.dead_letters == 0
            else f"inspect the dead letters: XRANGE {keys.dead_letters} - + COUNT 10",
            {"lag": stats.lag, "pending": stats.pending, "dead_letters": stats.dead_letters},
        )
    )
    return out


async def check_workers(redis: Redis, keys: Keys, agent_names: list[str]) -> list[Check]:
    summary = await WorkerRegistry(redis, keys).summary()
    served = sorted(summary)
    described = ", ".join(
        f"{name} ({s.workers} workers, {s.active_jobs}/{s.capacity} jobs"
        + (f", {s.draining_workers} draining" if s.draining_workers else "")
        + ")"
        for name, s in summary.items()
    )
    out = [
        Check(
            "workers",
            "live agent workers",
            bool(summary),
            described or "no agent worker has sent a heartbeat",
            "" if summary else "start agent workers (they register in Redis and with LiveKit)",
            {"served": served},
        )
    ]
    for name in agent_names:
        if name not in summary:
            others = ", ".join(repr(s) for s in served) or "none"
            out.append(
                Check(
                    "workers",
                    f"agent_name '{name}' served",
                    False,
                    f"dispatches go to '{name}' but live workers serve {others}",
                    f"set AGENT_WORKER_AGENT_NAME={name} on the workers, or dispatch a served "
                    "name; a worker registered with an empty agent_name never receives "
                    "explicit dispatches",
                )
            )
            continue
        entry = summary[name]
        free = entry.capacity - entry.active_jobs
        out.append(
            Check(
                "workers",
                f"agent_name '{name}' served",
                free > 0,
                f"{entry.workers} workers, {entry.active_jobs}/{entry.capacity} jobs, {free} free",
                "" if free > 0 else "every worker is full: scale the agent-worker deployment",
            )
        )
    return out


NO_WEBHOOK_YET = "the dispatcher has never received a LiveKit webhook"


async def check_webhooks(redis: Redis, keys: Keys) -> list[Check]:
    stats = await read_webhook_stats(redis, keys)
    now = now_ms()
    if stats.ok_count == 0 and stats.bad_count == 0:
        return [
            Check(
                "webhooks",
                "LiveKit webhooks received",
                False,
                NO_WEBHOOK_YET,
                "configure LiveKit's webhook URL to the dispatcher's /webhooks/livekit "
                "(polling still works, but slower)",
            )
        ]
    if stats.bad_count and stats.last_bad_at_ms >= stats.last_ok_at_ms:
        return [
            Check(
                "webhooks",
                "webhook signatures",
                False,
                f"{stats.bad_count} webhooks failed verification, last: {stats.last_bad_error}",
                "LiveKit signs webhooks with a key/secret that does not match the "
                "dispatcher's (DISPATCHER_WEBHOOK_API_KEY/SECRET, default LIVEKIT_API_KEY/SECRET)",
            )
        ]
    age_s = (now - stats.last_ok_at_ms) / 1000
    return [
        Check(
            "webhooks",
            "LiveKit webhooks received",
            True,
            f"{stats.ok_count} verified, last '{stats.last_ok_event}' {age_s:.0f} s ago"
            + (" (none recently)" if now - stats.last_ok_at_ms > WEBHOOK_RECENT_MS else "")
            + (f"; {stats.bad_count} rejected earlier" if stats.bad_count else ""),
        )
    ]


def _safe_url(url: str) -> str:
    """A URL without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
