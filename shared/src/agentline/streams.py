"""Redis stream primitives (Redis 7.0 commands only): idempotent publish, a consumer-group
consumer with paced take-over of a dead consumer's entries, and a dead-letter stream."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

# KEYS: stream, idempotency key; ARGV: ttl seconds, maxlen, n pairs, pairs...
_PUBLISH_ONCE = """
local existing = redis.call('GET', KEYS[2])
if existing then return {0, existing} end
local n = tonumber(ARGV[3])
local fields = {}
for i = 1, n * 2 do fields[i] = ARGV[3 + i] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
redis.call('SET', KEYS[2], id, 'EX', ARGV[1])
return {1, id}
"""

# KEYS: stream, dead-letter stream; ARGV: group, entry id, maxlen, n pairs, pairs...
_DEAD_LETTER = """
local n = tonumber(ARGV[4])
local fields = {}
for i = 1, n * 2 do fields[i] = ARGV[4 + i] end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode_fields(raw: dict[Any, Any] | None) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in (raw or {}).items()}


@dataclass(frozen=True, slots=True)
class PublishResult:
    created: bool
    entry_id: str


class StreamPublisher:
    def __init__(self, redis: Redis, stream: str, maxlen: int = 1_000_000) -> None:
        self.redis = redis
        self.stream = stream
        self.maxlen = maxlen
        self._once = redis.register_script(_PUBLISH_ONCE)

    async def publish(self, fields: dict[str, str]) -> str:
        entry = await self.redis.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        return _text(entry)

    async def publish_once(
        self, fields: dict[str, str], idempotency_key: str, ttl_seconds: int = 86400
    ) -> PublishResult:
        """Publish unless ``idempotency_key`` was used; a duplicate returns the first entry id.

        ``idempotency_key`` is a full Redis key: give it the stream's hash tag.
        """
        pairs: list[str] = [str(len(fields))]
        for key, value in fields.items():
            pairs.extend((key, value))
        created, entry = await self._once(
            keys=[self.stream, idempotency_key], args=[ttl_seconds, self.maxlen, *pairs]
        )
        return PublishResult(int(created) == 1, _text(entry))


@dataclass(slots=True)
class StreamEntry:
    entry_id: str
    fields: dict[str, str]
    deliveries: int = 1


@dataclass
class StreamConsumer:
    """One consumer of a consumer group.

    ``read`` takes new entries; ``claim_stale`` (paced: at most once per ``claim_interval``)
    takes over entries another consumer left pending for longer than ``claim_idle_ms``;
    an entry delivered more than ``max_deliveries`` times goes to the dead-letter stream.
    """

    redis: Redis
    stream: str
    group: str
    consumer: str
    dead_letter_stream: str
    max_deliveries: int = 5
    claim_idle_ms: int = 30_000
    claim_interval: float = 5.0
    dead_letter_maxlen: int = 100_000
    _claim_cursor: str = field(default="0-0", init=False)
    _last_claim: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._dead_letter = self.redis.register_script(_DEAD_LETTER)

    async def ensure_group(self) -> None:
        """Create the group (and the stream) unless it exists; reads from the stream's start."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, count: int, block_ms: int | None = None) -> list[StreamEntry]:
        """New entries for this consumer, at most ``count`` (size it to free capacity)."""
        if count <= 0:
            return []
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        entries: list[StreamEntry] = []
        for _stream, rows in reply or []:
            for entry_id, fields in rows:
                entries.append(StreamEntry(_text(entry_id), _decode_fields(fields), 1))
        return entries

    async def read_own_pending(self, count: int) -> list[StreamEntry]:
        """Entries delivered to this consumer name and not acked (after a restart)."""
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: "0"}, count=count
        )
        entries: list[StreamEntry] = []
        for _stream, rows in reply or []:
            for entry_id, fields in rows:
                if fields:
                    entries.append(StreamEntry(_text(entry_id), _decode_fields(fields)))
        return await self._with_deliveries(entries)

    async def claim_stale(self, count: int, force: bool = False) -> list[StreamEntry]:
        """Take over entries idle longer than ``claim_idle_ms``; paced unless ``force``."""
        now = time.monotonic()
        if count <= 0 or (not force and now - self._last_claim < self.claim_interval):
            return []
        self._last_claim = now
        reply = await self.redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=count,
        )
        cursor, rows = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        self._claim_cursor = _text(cursor)
        if deleted:  # trimmed away while pending: nothing left to process
            await self.redis.xack(self.stream, self.group, *[_text(d) for d in deleted])
        entries = [StreamEntry(_text(eid), _decode_fields(f)) for eid, f in rows if f]
        entries = await self._with_deliveries(entries)
        live: list[StreamEntry] = []
        for entry in entries:
            if entry.deliveries > self.max_deliveries:
                await self.dead_letter(entry, f"delivered {entry.deliveries} times")
            else:
                live.append(entry)
        return live

    async def _with_deliveries(self, entries: list[StreamEntry]) -> list[StreamEntry]:
        if not entries:
            return entries
        ids = [e.entry_id for e in entries]
        pending = await self.redis.xpending_range(
            self.stream,
            self.group,
            min=min(ids, key=_id_key),
            max=max(ids, key=_id_key),
            count=len(ids) * 4 + 10,
            consumername=self.consumer,
        )
        counts = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        for entry in entries:
            entry.deliveries = counts.get(entry.entry_id, entry.deliveries)
        return entries

    async def ack(self, *entry_ids: str) -> int:
        if not entry_ids:
            return 0
        return int(await self.redis.xack(self.stream, self.group, *entry_ids))

    async def dead_letter(self, entry: StreamEntry, reason: str) -> None:
        """Move an entry to the dead-letter stream with the reason, and ack it, atomically."""
        fields = {
            **entry.fields,
            "dead_letter_reason": reason,
            "original_id": entry.entry_id,
            "deliveries": str(entry.deliveries),
            "consumer": self.consumer,
        }
        pairs: list[str] = [str(len(fields))]
        for key, value in fields.items():
            pairs.extend((key, value))
        await self._dead_letter(
            keys=[self.stream, self.dead_letter_stream],
            args=[self.group, entry.entry_id, self.dead_letter_maxlen, *pairs],
        )


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, slots=True)
class GroupStats:
    lag: int  # entries not yet delivered to the group
    pending: int  # delivered, not acked
    consumers: int
    dead_letters: int
    length: int


async def group_stats(redis: Redis, stream: str, group: str, dead_letters: str) -> GroupStats:
    """Lag, pending and dead-letter counts, read now (Redis 7.0: XINFO GROUPS has ``lag``)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(stream)
        pipe.xlen(stream)
        pipe.xlen(dead_letters)
        exists, length, dead = await pipe.execute()
    if not exists:
        return GroupStats(0, 0, 0, int(dead), 0)
    groups = await redis.xinfo_groups(stream)
    for info in groups:
        if _text(info["name"]) == group:
            lag = info.get("lag")
            return GroupStats(
                lag=int(lag) if lag is not None else int(length),
                pending=int(info["pending"]),
                consumers=int(info["consumers"]),
                dead_letters=int(dead),
                length=int(length),
            )
    return GroupStats(int(length), 0, 0, int(dead), int(length))
