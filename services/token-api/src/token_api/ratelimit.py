"""Per-caller rate limit held in Redis, so every replica shares one budget.

A sliding-window counter: the current minute's count plus the previous minute's, weighted by
how much of it still overlaps the last 60 s. Each replica leases a small batch of requests
from that budget at a time (one Lua call decides and counts atomically) and spends it
locally: a Redis round trip per request would cost more than the rest of the request path.
The budget is never exceeded; at worst a replica's unspent lease lapses at the window's end.
Refused requests are not counted, so a caller that backs off recovers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from agentline.keys import Keys
from token_api.problems import Problem

WINDOW_SECONDS = 60
MAX_LEASE = 50  # requests a replica takes at once, at most
LEASE_DIVISOR = 100  # …and at most 1 % of the per-minute budget

# KEYS: current window counter, previous window counter
# ARGV: limit, fraction of the previous window still inside the sliding window (0..1),
#       counter ttl (s), requests wanted
_LEASE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local available = math.floor(tonumber(ARGV[1]) - current - previous * tonumber(ARGV[2]))
if available <= 0 then return {0, current, previous} end
local grant = math.min(tonumber(ARGV[4]), available)
redis.call('INCRBY', KEYS[1], grant)
if current == 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return {grant, current, previous}
"""


@dataclass(slots=True)
class _Lease:
    window: int
    remaining: int


def lease_size(per_minute: int) -> int:
    return max(1, min(MAX_LEASE, per_minute // LEASE_DIVISOR))


class RateLimiter:
    def __init__(self, redis: Redis, keys: Keys, per_minute: int) -> None:
        self.keys = keys
        self.per_minute = per_minute
        self.lease_size = lease_size(per_minute)
        self._lease_script = redis.register_script(_LEASE)
        self._leases: dict[str, _Lease] = {}

    async def check(self, caller: str) -> None:
        """Count one request for ``caller``; raise a 429 problem when over the limit."""
        if self.per_minute <= 0:
            return
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        lease = self._leases.get(caller)
        if lease is not None and lease.window == window and lease.remaining > 0:
            lease.remaining -= 1
            return
        elapsed = now - window * WINDOW_SECONDS
        overlap = 1.0 - elapsed / WINDOW_SECONDS
        granted, current, previous = await self._lease_script(
            keys=[
                self.keys.rate_limit(caller, window),
                self.keys.rate_limit(caller, window - 1),
            ],
            args=[self.per_minute, f"{overlap:.6f}", WINDOW_SECONDS * 2 + 1, self.lease_size],
        )
        granted = int(granted)
        if granted > 0:
            lease = self._leases.get(caller)  # another request may have leased meanwhile
            if lease is None or lease.window != window:
                self._leases[caller] = _Lease(window, granted - 1)
            else:
                lease.remaining += granted - 1
            return
        wait = seconds_until_allowed(self.per_minute, int(current), int(previous), elapsed)
        raise Problem(
            429,
            "rate-limited",
            f"More than {self.per_minute} requests per minute for this API key.",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
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
