"""LiveKit call tokens signed once per grant set and reused while fresh.

livekit-api signs a new JWT for every call it makes (a dataclass conversion, JSON and an
HMAC: ~50 µs, a tenth of a LiveKit call's client cost). The dispatcher calls LiveKit with few
grant sets (``roomCreate``, or ``roomAdmin`` of one room, which it uses for a dispatch's create,
list and polls), so each set is signed once and its header reused for ``reuse_seconds``: well
inside the token's TTL, and far shorter than the 6 h the SDK gives every token it signs.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from livekit import api

TOKEN_TTL = datetime.timedelta(minutes=10)
REUSE_SECONDS = 300.0
MAX_CACHED = 10_000


class CachedAuthHeaders:
    """A drop-in for ``livekit.api`` services' ``_auth_header(grants, sip)``."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        reuse_seconds: float = REUSE_SECONDS,
        max_cached: int = MAX_CACHED,
    ) -> None:
        self._key = api_key
        self._secret = api_secret
        self._reuse = reuse_seconds
        self._max = max_cached
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self.signed = 0  # tokens signed (for tests and curiosity)

    def __call__(
        self, grants: api.VideoGrants | None, sip: api.SIPGrants | None = None
    ) -> dict[str, str]:
        # The dataclasses' repr names every field: equal reprs are equal grants.
        cache_key = f"{grants!r}|{sip!r}"
        now = time.monotonic()
        hit = self._cache.get(cache_key)
        if hit is not None and now - hit[0] < self._reuse:
            return hit[1]
        token = api.AccessToken(self._key, self._secret).with_ttl(TOKEN_TTL)
        if grants is not None:
            token.with_grants(grants)
        if sip is not None:
            token.with_sip_grants(sip)
        header = {"authorization": f"Bearer {token.to_jwt()}"}
        self.signed += 1
        if hit is None and len(self._cache) >= self._max:
            del self._cache[next(iter(self._cache))]  # the oldest signed
        self._cache.pop(cache_key, None)  # re-inserted last: the dict stays in signing order
        self._cache[cache_key] = (now, header)
        return header

    def install(self, *services: Any) -> None:
        """Sign for these ``livekit.api`` service objects (room, agent_dispatch, ...)."""
        for service in services:
            if not callable(getattr(type(service), "_auth_header", None)):
                # The SDK changed how it signs: fail at start, not with unsigned calls.
                raise TypeError(f"{type(service).__name__} has no _auth_header to replace")
            service._auth_header = self
