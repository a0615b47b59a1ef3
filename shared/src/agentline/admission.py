"""Capacity-aware admission: a dispatch gets a worker slot before LiveKit is asked, or waits
in a FIFO queue per agent_name until one frees.

LiveKit drops a job when no worker is AVAILABLE and never retries it. The registry knows every
worker's capacity, so each admission is one Lua script that sums the live capacity of an
agent_name, counts the reservations held, and either reserves a slot or queues the dispatch:
two dispatcher replicas can never over-commit a worker pool. A reservation expires unless it
is confirmed (the worker accepted) — a dispatcher that crashed while holding one gives it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from agentline.ids import now_ms
from agentline.keys import Keys

# Shared prelude: live capacity (pruning expired workers) and live reservations (pruning
# expired ones). KEYS[1] capacity hash, KEYS[2] reservations (sorted set by expiry),
# KEYS[3] queue; ARGV[1] now.
_PRELUDE = """
local now = tonumber(ARGV[1])
local capacity = 0
local workers = redis.call('HGETALL', KEYS[1])
for i = 1, #workers, 2 do
  local cap, expiry, draining = string.match(workers[i + 1], '^(%d+):(%d+):(%d)$')
  if (not expiry) or tonumber(expiry) < now then
    redis.call('HDEL', KEYS[1], workers[i])
  elseif draining == '0' then
    capacity = capacity + tonumber(cap)
  end
end
-- reservations: a sorted set by expiry, so pruning and counting stay O(log n)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
local used = redis.call('ZCARD', KEYS[2])
local function admit_heads(hold_until)
  local admitted = {}
  while used < capacity do
    local head = redis.call('LPOP', KEYS[3])
    if not head then break end
    redis.call('ZADD', KEYS[2], hold_until, head)
    used = used + 1
    admitted[#admitted + 1] = head
  end
  return admitted
end
"""

# ARGV: now, dispatch id, hold until (ms), '1' to queue at the front (a dispatch that lost its
# slot), agent name (KEYS[4]: the set of agent names with queues). Returns {admitted 0/1, position, capacity, used}. A reservation already held is kept
# (and extended to at least hold until).
_ADMIT = (
    _PRELUDE
    + """
local id = ARGV[2]
local held = redis.call('ZSCORE', KEYS[2], id)
if held then
  if tonumber(held) < tonumber(ARGV[3]) then redis.call('ZADD', KEYS[2], ARGV[3], id) end
  return {1, 0, capacity, used}
end
local position = redis.call('LPOS', KEYS[3], id)
if position then
  -- already queued: the queue head may take a free slot now
  if position == 0 and used < capacity then
    redis.call('LPOP', KEYS[3])
    redis.call('ZADD', KEYS[2], ARGV[3], id)
    return {1, 0, capacity, used + 1}
  end
  return {0, position + 1, capacity, used}
end
if used < capacity and redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('ZADD', KEYS[2], ARGV[3], id)
  return {1, 0, capacity, used + 1}
end
redis.call('SADD', KEYS[4], ARGV[5])
if ARGV[4] == '1' then
  redis.call('LPUSH', KEYS[3], id)
  return {0, 1, capacity, used}
end
return {0, redis.call('RPUSH', KEYS[3], id), capacity, used}
"""
)

# The admission of a new request in the dispatcher's intake round trip, after the commands that
# take its lease and claim its room: it runs only when they succeeded and the record is still
# new, so that nothing has to be undone otherwise. KEYS[5] the lease, KEYS[6] the room's
# claim, KEYS[7] the dispatch record; ARGV[6] the lease token, ARGV[7] the record's new state.
# Returns {-1, 0, 0, 0} when it did not run.
_ADMIT_IF_OWNED = (
    """
if redis.call('GET', KEYS[5]) ~= ARGV[6] or redis.call('GET', KEYS[6]) ~= ARGV[2]
    or redis.call('HGET', KEYS[7], 'state') ~= ARGV[7] then
  return {-1, 0, 0, 0}
end
"""
    + _ADMIT
)

# ARGV: now, dispatch id to release ('' for none), hold until for newly admitted heads.
# Returns the dispatch ids admitted from the queue head.
_RELEASE_AND_PUMP = (
    _PRELUDE
    + """
if ARGV[2] ~= '' then
  if redis.call('ZREM', KEYS[2], ARGV[2]) == 1 then used = used - 1 end
  redis.call('LREM', KEYS[3], 0, ARGV[2])
end
return admit_heads(ARGV[3])
"""
)

# ARGV: now, dispatch id, hold until. Extends a held reservation; 0 when it is not held.
_CONFIRM = """
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1
"""

# ARGV: now, dispatch id, release by (ms). Shortens a held reservation to expire by then.
_RELEASE_BY = """
local held = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not held then return 0 end
if tonumber(held) > tonumber(ARGV[3]) then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2]) end
return 1
"""

_STATUS = _PRELUDE + "\nreturn {capacity, used, redis.call('LLEN', KEYS[3])}"


@dataclass(frozen=True, slots=True)
class AdmitResult:
    admitted: bool
    position: int  # 1-based place in the queue when not admitted
    capacity: int
    used: int


@dataclass(frozen=True, slots=True)
class OwnedRequest:
    """What a dispatcher holds on a new request for ``Admission.try_admit_in`` to run."""

    lease_key: str
    lease_token: str
    room_key: str
    record_key: str
    new_state: str


@dataclass(frozen=True, slots=True)
class AdmissionStatus:
    capacity: int
    used: int
    waiting: int


class Admission:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        reserve_ms: int = 15_000,
        job_hold_ms: int = 6 * 3600 * 1000,
        scripts_redis: Redis | None = None,
    ) -> None:
        """``scripts_redis``: where the scripts run (a per-dispatch path: the dispatcher's
        pipelined connection); the queue reads use ``redis``."""
        self.redis = redis
        self.keys = keys
        self.reserve_ms = reserve_ms  # unconfirmed reservation lifetime (≥ assign timeout)
        self.job_hold_ms = job_hold_ms  # confirmed: until the job ends (bounded)
        scripts = scripts_redis or redis
        self._admit = scripts.register_script(_ADMIT)
        self._admit_if_owned = scripts.register_script(_ADMIT_IF_OWNED)
        self._release = scripts.register_script(_RELEASE_AND_PUMP)
        self._confirm = scripts.register_script(_CONFIRM)
        self._release_by = scripts.register_script(_RELEASE_BY)
        self._status = scripts.register_script(_STATUS)

    def _keys(self, agent_name: str) -> list[str]:
        return [
            self.keys.agent_capacity(agent_name),
            self.keys.slots_used(agent_name),
            self.keys.waiting_queue(agent_name),
        ]

    def _admit_call(
        self, dispatch_id: str, agent_name: str, front: bool
    ) -> tuple[list[Any], list[Any]]:
        """The admission script's keys and arguments (``_ADMIT``)."""
        at = now_ms()
        keys = [*self._keys(agent_name), self.keys.admission_agents]
        args = [at, dispatch_id, at + self.reserve_ms, "1" if front else "0", agent_name]
        return keys, args

    @staticmethod
    def _result(reply: Any) -> AdmitResult:
        admitted, position, capacity, used = (int(x) for x in reply)
        return AdmitResult(admitted == 1, position, capacity, used)

    async def try_admit(
        self, dispatch_id: str, agent_name: str, front: bool = False
    ) -> AdmitResult:
        """Reserve a slot, or queue the dispatch (idempotent: a queued one keeps its place, a
        held reservation is kept and extended). ``front``: queue at the head (it lost its slot)."""
        keys, args = self._admit_call(dispatch_id, agent_name, front)
        return self._result(await self._admit(keys=keys, args=args))

    async def try_admit_in(
        self, pipe: Any, dispatch_id: str, agent_name: str, owned: OwnedRequest
    ) -> None:
        """Queue ``try_admit`` in ``pipe`` (after the commands that take ``owned``'s lease and
        room claim): it runs only if they did and the record is still new.
        ``admitted_from`` reads its reply."""
        keys, args = self._admit_call(dispatch_id, agent_name, front=False)
        await self._admit_if_owned(
            keys=[*keys, owned.lease_key, owned.room_key, owned.record_key],
            args=[*args, owned.lease_token, owned.new_state],
            client=pipe,
        )

    @classmethod
    def admitted_from(cls, reply: Any) -> AdmitResult | None:
        """The reply of ``try_admit_in``: None when it did not run."""
        return None if int(reply[0]) < 0 else cls._result(reply)

    async def confirm(self, dispatch_id: str, agent_name: str) -> bool:
        """The worker accepted: hold the slot until the job ends."""
        reply = await self._confirm(
            keys=[self.keys.slots_used(agent_name)],
            args=[now_ms(), dispatch_id, now_ms() + self.job_hold_ms],
        )
        return int(reply) == 1

    async def release_by(self, dispatch_id: str, agent_name: str, grace_ms: int) -> bool:
        """The job is over for LiveKit but its worker has not said so yet: the slot goes back
        when the worker reports the end (``release``) or, at the latest, in ``grace_ms``."""
        at = now_ms()
        reply = await self._release_by(
            keys=[self.keys.slots_used(agent_name)], args=[at, dispatch_id, at + grace_ms]
        )
        return int(reply) == 1

    async def release(self, dispatch_id: str, agent_name: str) -> list[str]:
        """Give back a slot (or leave the queue); returns dispatch ids admitted in its place."""
        return await self._pump(agent_name, dispatch_id)

    async def pump(self, agent_name: str) -> list[str]:
        """Admit queue heads while slots are free (capacity raised, reservations expired)."""
        return await self._pump(agent_name, "")

    async def _pump(self, agent_name: str, release_id: str) -> list[str]:
        at = now_ms()
        reply: Any = await self._release(
            keys=self._keys(agent_name), args=[at, release_id, at + self.reserve_ms]
        )
        return [x.decode() if isinstance(x, bytes) else str(x) for x in reply]

    async def position(self, dispatch_id: str, agent_name: str) -> int:
        """1-based place in the queue, 0 when not waiting."""
        index: Any = await self.redis.lpos(self.keys.waiting_queue(agent_name), dispatch_id)
        return 0 if index is None else int(index) + 1

    async def waiting_ids(self, agent_name: str, limit: int = 0) -> list[str]:
        """The queue in order (its first ``limit`` when given)."""
        key = self.keys.waiting_queue(agent_name)
        return [str(x) for x in await self.redis.lrange(key, 0, limit - 1 if limit else -1)]

    async def status(self, agent_name: str) -> AdmissionStatus:
        reply: Any = await self._status(keys=self._keys(agent_name), args=[now_ms()])
        capacity, used, waiting = (int(x) for x in reply)
        return AdmissionStatus(capacity, used, waiting)

    async def queued_agent_names(self) -> list[str]:
        return sorted(str(x) for x in await self.redis.smembers(self.keys.admission_agents))

    async def record_job_duration(self, agent_name: str, duration_ms: int) -> None:
        key = self.keys.job_durations(agent_name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, duration_ms)
            pipe.ltrim(key, 0, 49)
            await pipe.execute()

    async def mean_job_duration_ms(self, agent_name: str) -> float:
        """Mean of the last 50 job durations (0 when there is no history)."""
        raw = await self.redis.lrange(self.keys.job_durations(agent_name), 0, -1)
        return sum(int(x) for x in raw) / len(raw) if raw else 0.0

    @staticmethod
    def estimate(mean_ms: float, position: int, capacity: int) -> int:
        """Position × mean job duration ÷ capacity: the slots free up ``capacity`` at a time."""
        if position <= 0 or mean_ms <= 0:
            return 0
        return int(position * mean_ms / max(1, capacity))

    async def estimated_wait_ms(self, agent_name: str, position: int, capacity: int) -> int:
        """Position × mean recent job duration ÷ capacity (0 when there is no history)."""
        if position <= 0:
            return 0
        return self.estimate(await self.mean_job_duration_ms(agent_name), position, capacity)


def status_sync(client: Any, keys: Keys, agent_name: str) -> AdmissionStatus:
    """:meth:`Admission.status` on a synchronous client (metrics collectors at scrape time)."""
    reply: Any = client.eval(
        _STATUS,
        3,
        keys.agent_capacity(agent_name),
        keys.slots_used(agent_name),
        keys.waiting_queue(agent_name),
        now_ms(),
    )
    capacity, used, waiting = (int(x) for x in reply)
    return AdmissionStatus(capacity, used, waiting)
