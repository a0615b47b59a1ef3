"""Per-caller rate limit held in Redis, so every replica shares one budget.

A sliding-window counter: the current minute's count plus the previous minute's, weighted by
how much of it still overlaps the last 60 s. One Lua call per request decides and counts
atomically; a refused request is not counted, so a caller that backs off recovers.
"""

from __future__ import annotations

import math
import time

from agentline.keys import Keys
from redis.asyncio import Redis

from token_api.problems import Problem

WINDOW_SECONDS = 60

# KEYS: current window counter, previous window counter
# ARGV: limit, fraction of the previous window still inside the sliding window (0..1), ttl s
_CHECK = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local estimate = current + previous * tonumber(ARGV[2])
if estimate + 1 > tonumber(ARGV[1]) then return {0, current, previous} end
redis.call('INCR', KEYS[1])
if current == 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return {1, current, previous}
"""


class RateLimiter:
    def __init__(self, redis: Redis, keys: Keys, per_minute: int) -> None:
        self.keys = keys
        self.per_minute = per_minute
        self._check = redis.register_script(_CHECK)

    async def check(self, caller: str) -> None:
        """Count one request for ``caller``; raise a 429 problem when over the limit."""
        if self.per_minute <= 0:
            return
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        elapsed = now - window * WINDOW_SECONDS
        overlap = 1.0 - elapsed / WINDOW_SECONDS
        allowed, current, previous = await self._check(
            keys=[
                self.keys.rate_limit(caller, window),
                self.keys.rate_limit(caller, window - 1),
            ],
            args=[self.per_minute, f"{overlap:.4f}", WINDOW_SECONDS * 2 + 1],
        )
        if int(allowed) == 1:
            return
        retry_after = max(
            1,
            math.ceil(seconds_until_allowed(self.per_minute, int(current), int(previous), elapsed)),
        )
        raise Problem(
            429,
            "rate-limited",
            f"More than {self.per_minute} requests per minute for this API key.",
            headers={"Retry-After": str(retry_after)},
        )


def seconds_until_allowed(limit: int, current: int, previous: int, elapsed: float) -> float:
    """When one more request fits: once the previous window's weight has slid out enough, or
    at the next window when the current one alone is full."""
    until_next_window = WINDOW_SECONDS - elapsed
    room = limit - 1 - current
    if room < 0 or previous <= 0:
        return until_next_window
    # current + previous * (1 - t / W) <= limit - 1  ⇔  t >= W * (1 - room / previous)
    allowed_at = WINDOW_SECONDS * (1 - room / previous)
    return max(0.0, min(allowed_at - elapsed, until_next_window))
