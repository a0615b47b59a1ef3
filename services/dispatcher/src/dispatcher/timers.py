"""Redis-held timers and ownership, so that no replica keeps authoritative state in memory.

* ``Deadlines``: the sorted set ``keys.deadlines`` maps a dispatch id to the next time a
  dispatcher must look at it (a stage timeout or a poll). Every replica's scanner claims due
  members atomically; a claim pushes the member ``lease_ms`` ahead, so a replica that dies
  while handling it loses nothing: the member comes due again.
* ``Leases``: a short-lived owner key per dispatch, held while a replica changes the
  dispatch in LiveKit (create, delete, re-dispatch), so two replicas never do it at once.
* ``RoomOwners``: ``keys.room_dispatch(room)``: the one dispatch that owns the agent of a room.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from agentline.keys import Keys

# KEYS: deadlines; ARGV: now ms, lease ms, limit
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, member)
end
return due
"""

# KEYS: key; ARGV: expected value, [ttl ms]. Renew (with ttl) or delete (without) if ours.
_IF_OURS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
"""

# KEYS: key; ARGV: expected current value, new value, ttl s. Compare-and-set.
_REPLACE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class Deadlines:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.deadlines
        self._claim = redis.register_script(_CLAIM_DUE)

    async def schedule(self, dispatch_id: str, at_ms: int, only_if_absent: bool = False) -> None:
        await self.redis.zadd(self.key, {dispatch_id: at_ms}, nx=only_if_absent)

    async def clear(self, dispatch_id: str) -> None:
        await self.redis.zrem(self.key, dispatch_id)

    async def claim_due(self, now_ms: int, lease_ms: int, limit: int) -> list[str]:
        if limit <= 0:
            return []
        due: Any = await self._claim(keys=[self.key], args=[now_ms, lease_ms, limit])
        return [str(member) for member in due]

    async def due_at(self, dispatch_id: str) -> float | None:
        score = await self.redis.zscore(self.key, dispatch_id)
        return None if score is None else float(score)


class Leases:
    def __init__(self, redis: Redis, keys: Keys, owner: str) -> None:
        self.redis = redis
        self.keys = keys
        self.owner = owner
        self.held: dict[str, tuple[str, float]] = {}  # dispatch id -> (token, renewed at)
        self._if_ours = redis.register_script(_IF_OURS)

    def key(self, dispatch_id: str) -> str:
        return self.keys.dispatch_lease(dispatch_id)

    # Each holding is a fresh token, and this process remembers what it holds: two tasks of
    # one process (the intake and the scanner) never both believe they hold a dispatch.
    def _new_token(self) -> str:
        return f"{self.owner}:{uuid.uuid4().hex[:8]}"

    def holds(self, dispatch_id: str) -> bool:
        return dispatch_id in self.held

    def acquire_in(self, pipe: Pipeline, dispatch_id: str, ttl_ms: int) -> str:
        """Queue an acquisition; pass its result to :meth:`acquired`."""
        token = self._new_token()
        pipe.set(self.key(dispatch_id), token, nx=True, px=ttl_ms)
        return token

    def acquired(self, dispatch_id: str, token: str, ok: Any) -> bool:
        if not ok or dispatch_id in self.held:
            return False
        self.held[dispatch_id] = (token, time.monotonic())
        return True

    async def acquire(self, dispatch_id: str, ttl_ms: int) -> bool:
        if dispatch_id in self.held:
            return False
        token = self._new_token()
        ok = await self.redis.set(self.key(dispatch_id), token, nx=True, px=ttl_ms)
        return self.acquired(dispatch_id, token, ok)

    async def renew(self, dispatch_id: str, ttl_ms: int, lazy: bool = True) -> bool:
        """Extend our lease; ``lazy``: only once a third of it has passed. False: not ours."""
        holding = self.held.get(dispatch_id)
        if holding is None:
            return False
        token, renewed_at = holding
        if lazy and time.monotonic() - renewed_at < ttl_ms / 3000:
            return True
        result = await self._if_ours(keys=[self.key(dispatch_id)], args=[token, ttl_ms])
        if int(result) != 1:
            self.held.pop(dispatch_id, None)
            return False
        self.held[dispatch_id] = (token, time.monotonic())
        return True

    def held_key(self, dispatch_id: str) -> tuple[str, str] | None:
        """(key, token) of our holding, for a script that deletes the key if it still holds
        the token (``DispatchStore.transition(release=...)``); then :meth:`forget` it."""
        holding = self.held.get(dispatch_id)
        return None if holding is None else (self.key(dispatch_id), holding[0])

    def forget(self, dispatch_id: str) -> None:
        self.held.pop(dispatch_id, None)

    async def release(self, dispatch_id: str) -> None:
        holding = self.held.pop(dispatch_id, None)
        if holding is not None:
            await self._if_ours(keys=[self.key(dispatch_id)], args=[holding[0]])

    async def remaining_ms(self, dispatch_id: str) -> int:
        return int(await self.redis.pttl(self.key(dispatch_id)))


class RoomOwners:
    TTL_SECONDS = 24 * 3600
    KNOWN_MAX = 100_000

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        # Owners this replica claimed or read: a hint that saves the webhook path a GET (a
        # room's owner changes only after its dispatch ended, which the reader checks).
        self.known: dict[str, str] = {}
        self._if_ours = redis.register_script(_IF_OURS)
        self._replace = redis.register_script(_REPLACE)

    def claim_in(self, pipe: Pipeline, room: str, dispatch_id: str) -> None:
        pipe.set(self.keys.room_dispatch(room), dispatch_id, nx=True, ex=self.TTL_SECONDS)

    def remember(self, room: str, dispatch_id: str) -> None:
        if len(self.known) >= self.KNOWN_MAX:
            self.known.clear()
        self.known[room] = dispatch_id

    async def owner(self, room: str) -> str | None:
        value = await self.redis.get(self.keys.room_dispatch(room))
        return None if value is None else str(value)

    async def take_over(self, room: str, previous: str, dispatch_id: str) -> bool:
        result = await self._replace(
            keys=[self.keys.room_dispatch(room)], args=[previous, dispatch_id, self.TTL_SECONDS]
        )
        return int(result) == 1

    async def claim(self, room: str, dispatch_id: str) -> bool:
        key = self.keys.room_dispatch(room)
        return bool(await self.redis.set(key, dispatch_id, nx=True, ex=self.TTL_SECONDS))

    async def release(self, room: str, dispatch_id: str) -> None:
        await self._if_ours(keys=[self.keys.room_dispatch(room)], args=[dispatch_id])
