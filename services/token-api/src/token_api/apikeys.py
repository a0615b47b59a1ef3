"""API keys, kept only as SHA-256 digests. A caller is known by a short prefix of its key's
digest, which scopes rate limits and idempotency keys without storing the key itself."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

CALLER_ID_HEX = 16


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(digest(k) for k in keys if k)
        if not self._digests:
            raise ValueError("TOKEN_API_API_KEYS must hold at least one key")

    def caller_of(self, presented: str) -> str | None:
        """The caller id of a valid key, else None (constant-time over the configured keys)."""
        candidate = digest(presented)
        match = False
        for known in self._digests:
            match |= hmac.compare_digest(candidate, known)
        return candidate.hex()[:CALLER_ID_HEX] if match else None
