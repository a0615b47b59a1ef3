"""The dispatch store: records, their transitions and event streams, applied atomically in Redis.

Every write that must be all-or-nothing is one Lua script over keys of one hash tag, so two
racing writers (two dispatcher replicas, a webhook and a worker event) cannot both win a
transition, and the record, its event and the request entry never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from redis.asyncio import Redis

from agentline.ids import now_ms
from agentline.keys import Keys
from agentline.lifecycle import (
    ALLOWED_TRANSITIONS,
    DispatchState,
    FailureReason,
    is_terminal,
)
from agentline.schema import DispatchEvent, DispatchKind, DispatchRecord, DispatchRequest

DEFAULT_TERMINAL_TTL_SECONDS = 24 * 3600
REQUESTS_STREAM_MAXLEN = 1_000_000
_encode_json = msgspec.json.Encoder().encode
# The id of a dispatch's ``requested`` event: below every id Redis gives a stream entry.
REQUESTED_EVENT_ID = "0-1"

# KEYS: record, requests stream, idempotency key
# ARGV: dispatch id, idempotency ttl (s), requests maxlen, request json, room, agent name,
#       kind ('' for a session), metadata, caller identity, requested at (ms), trace json
# The record is built here from those few values rather than sent as a finished hash: the
# hash the script writes is DispatchRecord.to_hash() of the new record (the tests hold the
# two equal), and sending it whole cost the session path more than the rest of the write.
_CREATE = """
if KEYS[3] ~= KEYS[1] then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {0, existing} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, ARGV[1]} end
local at = ARGV[10]
local record = {'id', ARGV[1], 'state', 'requested', 'room', ARGV[5], 'agent_name', ARGV[6],
  'created_at_ms', at, 'updated_at_ms', at, 'version', '1', 't_requested', at,
  'trace', ARGV[11]}
-- Fields left at their defaults are not stored, as DispatchRecord.to_hash leaves them out.
local optional = {{'kind', ARGV[7]}, {'metadata', ARGV[8]}, {'caller_identity', ARGV[9]}}
for _, field in ipairs(optional) do
  if field[2] ~= '' then
    record[#record + 1] = field[1]
    record[#record + 1] = field[2]
  end
end
redis.call('HSET', KEYS[1], unpack(record))
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
  'dispatch_id', ARGV[1], 'request', ARGV[4])
if KEYS[3] ~= KEYS[1] then
  redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
end
return {1, ARGV[1], entry}
"""

# KEYS: record, dispatch events, deadlines, [a key to release]
# ARGV: target, allowed-from (space separated), now ms, terminal ttl (0: not terminal),
#       expected version ('' for any), next deadline ms ('' for none),
#       n record pairs, pairs..., n event pairs, pairs..., [the value the key must hold]
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return {-1, ''} end
if not string.find(' ' .. ARGV[2] .. ' ', ' ' .. current .. ' ', 1, true) then
  return {0, current}
end
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'version') ~= ARGV[5] then
  return {0, current}
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'updated_at_ms', ARGV[3], 't_' .. ARGV[1], ARGV[3])
local n = tonumber(ARGV[7])
if n > 0 then
  local fields = {}
  for i = 1, n * 2 do fields[i] = ARGV[7 + i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
local base = 8 + n * 2
local m = tonumber(ARGV[base])
local event = {'seq', tostring(version), 'previous', current}
for i = 1, m * 2 do event[4 + i] = ARGV[base + i] end
local event_id = redis.call('XADD', KEYS[2], '*', unpack(event))
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('ZREM', KEYS[3], redis.call('HGET', KEYS[1], 'id'))
elseif ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[6], redis.call('HGET', KEYS[1], 'id'))
end
if KEYS[4] and redis.call('GET', KEYS[4]) == ARGV[base + m * 2 + 1] then
  redis.call('DEL', KEYS[4])
end
return {1, current, version, event_id}
"""

# KEYS: record; ARGV: n pairs, pairs... (an expired record is not brought back)
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local fields = {}
for i = 1, tonumber(ARGV[1]) * 2 do fields[i] = ARGV[1 + i] end
redis.call('HSET', KEYS[1], unpack(fields))
return 1
"""

# KEYS: record, dispatch events; ARGV: now ms, position, estimated wait ms. Only while waiting:
# the record's queue fields and a "queue" event (no transition: state and version unchanged).
_QUEUE_UPDATE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'waiting' then return 0 end
redis.call('HSET', KEYS[1], 'queue_position', ARGV[2], 'estimated_wait_ms', ARGV[3])
local detail = '{"position":"' .. ARGV[2] .. '","estimated_wait_ms":"' .. ARGV[3] .. '"}'
redis.call('XADD', KEYS[2], '*', 'dispatch_id', redis.call('HGET', KEYS[1], 'id'),
  'seq', redis.call('HGET', KEYS[1], 'version'), 'state', 'waiting', 'kind', 'queue',
  'at_ms', ARGV[1], 'detail', detail)
return 1
"""

_ALLOWED_FROM: dict[DispatchState, str] = {
    target: " ".join(
        sorted(s.value for s, targets in ALLOWED_TRANSITIONS.items() if target in targets)
    )
    for target in DispatchState
}


@dataclass(frozen=True, slots=True)
class CreateResult:
    created: bool  # False: the idempotency key (or id) was used before
    dispatch_id: str
    entry_id: str = ""


@dataclass(frozen=True, slots=True)
class TransitionResult:
    applied: bool
    previous: DispatchState | None  # None: no such dispatch
    version: int = 0
    event_id: str = ""


def _pairs(mapping: dict[str, str]) -> list[str]:
    out: list[str] = [str(len(mapping))]
    for key, value in mapping.items():
        out.extend((key, value))
    return out


class DispatchStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        terminal_ttl_seconds: int = DEFAULT_TERMINAL_TTL_SECONDS,
        idempotency_ttl_seconds: int = 24 * 3600,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.terminal_ttl_seconds = terminal_ttl_seconds
        self.idempotency_ttl_seconds = idempotency_ttl_seconds
        self._create = redis.register_script(_CREATE)
        self._transition = redis.register_script(_TRANSITION)
        self._update = redis.register_script(_UPDATE_IF_EXISTS)
        self._queue_update = redis.register_script(_QUEUE_UPDATE)

    async def create(
        self, request: DispatchRequest, idempotency_key: str | None = None
    ) -> CreateResult:
        """Record a new dispatch and publish its request, atomically; once per idempotency key."""
        record_key = self.keys.dispatch(request.dispatch_id)
        idem_key = (
            self.keys.idempotency("dispatch", idempotency_key) if idempotency_key else record_key
        )
        # No event is written: the dispatch's stream begins with its first transition, and
        # ``events`` makes the ``requested`` event from the record (a new stream per session
        # cost Redis more than the rest of the session's write).
        result = await self._create(
            keys=[record_key, self.keys.requests, idem_key],
            args=[
                request.dispatch_id,
                self.idempotency_ttl_seconds,
                REQUESTS_STREAM_MAXLEN,
                _encode_json(request),
                request.room,
                request.agent_name,
                "" if request.kind is DispatchKind.SESSION else request.kind.value,
                request.metadata,
                request.caller_identity,
                request.requested_at_ms or now_ms(),
                _encode_json(request.trace),
            ],
        )
        created, dispatch_id = int(result[0]) == 1, _text(result[1])
        return CreateResult(created, dispatch_id, _text(result[2]) if created else "")

    async def get(self, dispatch_id: str) -> DispatchRecord | None:
        raw = await self.redis.hgetall(self.keys.dispatch(dispatch_id))
        if not raw:
            return None
        return DispatchRecord.from_hash({_text(k): _text(v) for k, v in raw.items()})

    async def transition(
        self,
        dispatch_id: str,
        target: DispatchState,
        *,
        reason: FailureReason | None = None,
        fields: dict[str, Any] | None = None,
        detail: dict[str, str] | None = None,
        expected_version: int | None = None,
        at_ms: int | None = None,
        next_look_at_ms: int | None = None,
        release: tuple[str, str] | None = None,
    ) -> TransitionResult:
        """Move a dispatch to ``target`` if allowed from its current state (and version).
        ``next_look_at_ms``: when applied (and not terminal), also set its deadline to that
        time; ``release`` (key, value): when applied, delete that key if it holds that value
        (a lease); both in the same round trip."""
        at = at_ms or now_ms()
        updates = {k: _field_text(v) for k, v in (fields or {}).items()}
        if reason is not None:
            updates["reason"] = reason.value
        event: dict[str, str] = {
            "dispatch_id": dispatch_id,
            "state": target.value,
            "at_ms": str(at),
        }
        if reason is not None:
            event["reason"] = reason.value
        if detail:
            event["detail"] = msgspec.json.encode(detail).decode()
        ttl = self.terminal_ttl_seconds if is_terminal(target) else 0
        result = await self._transition(
            keys=[
                self.keys.dispatch(dispatch_id),
                self.keys.dispatch_events(dispatch_id),
                self.keys.deadlines,
                *([release[0]] if release else []),
            ],
            args=[
                target.value,
                _ALLOWED_FROM[target],
                at,
                ttl,
                "" if expected_version is None else str(expected_version),
                "" if next_look_at_ms is None else str(next_look_at_ms),
                *_pairs(updates),
                *_pairs(event),
                *([release[1]] if release else []),
            ],
        )
        status = int(result[0])
        if status == -1:
            return TransitionResult(False, None)
        previous = DispatchState(_text(result[1]))
        if status == 0:
            return TransitionResult(False, previous)
        return TransitionResult(True, previous, int(result[2]), _text(result[3]))

    async def update_fields(self, dispatch_id: str, fields: dict[str, Any]) -> bool:
        """Set informative fields (queue position, agent identity) without a transition."""
        mapping = {k: _field_text(v) for k, v in fields.items()}
        result = await self._update(keys=[self.keys.dispatch(dispatch_id)], args=_pairs(mapping))
        return int(result) == 1

    async def queue_updates(self, places: list[tuple[str, int, int]]) -> int:
        """Tell waiting dispatches their new place: (dispatch id, position, estimated wait ms)
        each. Sets ``queue_position``/``estimated_wait_ms`` and appends a ``queue`` event to the
        dispatch's stream (what SSE serves), without a transition; dispatches no longer
        waiting are left alone. One round trip; returns how many were updated."""
        if not places:
            return 0
        at = now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            for dispatch_id, position, wait_ms in places:
                await self._queue_update(
                    keys=[self.keys.dispatch(dispatch_id), self.keys.dispatch_events(dispatch_id)],
                    args=[at, int(position), int(wait_ms)],
                    client=pipe,
                )
            replies = await pipe.execute()
        return sum(int(r) for r in replies)

    async def events(
        self, dispatch_id: str, after: str = "0-0", count: int = 100
    ) -> list[DispatchEvent]:
        """Events of one dispatch after a stream id (exclusive). From the start, the first is
        ``requested`` with id :data:`REQUESTED_EVENT_ID`, made from the record (``create``
        writes no event; streams of dispatches created before that hold their own)."""
        from_start = after in ("0", "0-0", "")
        start = "-" if from_start else (after if after.startswith("(") else f"({after}")
        rows: Any = await self.redis.xrange(
            self.keys.dispatch_events(dispatch_id), start, "+", count
        )
        events = [_event(entry_id, fields) for entry_id, fields in rows]
        if from_start and not (events and events[0].state is DispatchState.REQUESTED):
            record = await self.get(dispatch_id)
            if record is not None:
                events.insert(0, requested_event(record))
        return events

    async def wait_events(
        self, dispatch_id: str, after: str, block_ms: int, count: int = 100
    ) -> list[DispatchEvent]:
        """Block up to ``block_ms`` for events after ``after`` (use a dedicated connection)."""
        stream = self.keys.dispatch_events(dispatch_id)
        reply: Any = await self.redis.xread({stream: after or "0-0"}, count=count, block=block_ms)
        out: list[DispatchEvent] = []
        for _stream, rows in reply or []:
            out.extend(_event(entry_id, fields) for entry_id, fields in rows)
        return out


def requested_event(record: DispatchRecord) -> DispatchEvent:
    """A dispatch's first event, from its record: every stream id is above its id."""
    return DispatchEvent(
        dispatch_id=record.id,
        seq=1,
        state=DispatchState.REQUESTED,
        at_ms=record.created_at_ms,
        event_id=REQUESTED_EVENT_ID,
    )


def _event(entry_id: Any, fields: dict[Any, Any]) -> DispatchEvent:
    return DispatchEvent.from_fields(
        _text(entry_id), {_text(k): _text(v) for k, v in fields.items()}
    )


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)


def _field_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    return msgspec.json.encode(value).decode()
