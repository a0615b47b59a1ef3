"""``Idempotency-Key`` on POSTs: the same key and body get the first answer again; the same
key with another body is a 409. Answers are kept per caller for a day.

The key is first reserved with the body's digest, then the answer is stored once it is
complete. The dispatch paths also hand the key to ``DispatchStore.create``, which refuses a
second dispatch for it atomically: a retry that finds the key reserved but unanswered (the
first request is in flight or its process died) is answered from the recorded dispatch, so
there is never a second dispatch and never a lost one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from redis.asyncio import Redis

from agentline.keys import Keys
from token_api.problems import Problem

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, like the IETF draft's examples

# KEYS: answer hash; ARGV: body digest, ttl. Claims the key for this body (status 0: being
# answered) unless it is held; returns what is held.
_RESERVE = """
local held = redis.call('HMGET', KEYS[1], 'digest', 'status', 'body')
if held[1] then return held end
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'status', '0')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {}
"""


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    body: bytes


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def validate_key(key: str) -> str:
    if not _KEY_PATTERN.match(key):
        raise Problem(
            400,
            "bad-idempotency-key",
            "Idempotency-Key must be 1-255 visible ASCII characters.",
        )
    return key


class IdempotencyStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._reserve = redis.register_script(_RESERVE)

    def scoped(self, caller: str, key: str) -> str:
        """The key as stored: per caller, so two callers never share answers."""
        return f"{caller}:{key}"

    async def reserve(self, scope: str, scoped_key: str, digest: str) -> StoredAnswer | None:
        """Claim the key for this body. Returns the first answer when there is one; None when
        this request must answer; a 409 problem when the key was used with another body."""
        held = await self._reserve(
            keys=[self.keys.idempotency(scope, scoped_key)],
            args=[digest, IDEMPOTENCY_TTL_SECONDS],
        )
        if not held:
            return None
        held_digest, status, body = held
        if held_digest != digest:
            raise Problem(
                409,
                "idempotency-key-reused",
                "This Idempotency-Key was used with a different request body.",
            )
        if not status or int(status) == 0 or body is None:
            return None  # reserved but not answered yet: answer again from the record
        return StoredAnswer(int(status), str(body).encode())

    async def remember(
        self, scope: str, scoped_key: str, digest: str, status: int, body: bytes
    ) -> None:
        key = self.keys.idempotency(scope, scoped_key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"digest": digest, "status": str(status), "body": body})
            pipe.expire(key, IDEMPOTENCY_TTL_SECONDS)
            await pipe.execute()
