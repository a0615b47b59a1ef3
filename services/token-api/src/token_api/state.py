"""What the app holds for its lifetime: settings, Redis clients and the helpers built on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.redis_mux import MuxRedis
from agentline.registry import WorkerRegistry
from agentline.settings import TokenApiSettings
from agentline.store import DispatchStore
from token_api.apikeys import ApiKeys
from token_api.idempotency import IdempotencyStore
from token_api.ratelimit import RateLimiter
from token_api.tokens import TokenMinter

STATE_KEY = "token_api"


@dataclass(slots=True)
class AppState:
    settings: TokenApiSettings
    keys: Keys
    redis: Redis
    stream_redis: Redis  # blocking reads for SSE: its own pool and a longer socket timeout
    stream_store: DispatchStore  # the store on stream_redis
    store: DispatchStore
    session_store: DispatchStore  # create() on the pipelined connection (see redis_mux)
    registry: WorkerRegistry
    api_keys: ApiKeys
    rate_limiter: RateLimiter
    idempotency: IdempotencyStore
    minter: TokenMinter
    livekit_url: str

    async def close(self) -> None:
        if isinstance(self.session_store.redis, MuxRedis):
            await self.session_store.redis.aclose()
        await self.redis.aclose()
        await self.stream_redis.aclose()


def app_state(app: Any) -> AppState:
    state: AppState = app.state[STATE_KEY]
    return state
