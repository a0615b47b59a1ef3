"""A reference for token-api's benchmark: the least a session endpoint does.

It decodes the body into a struct, records the dispatch and publishes its request in one
atomic Redis call (a Lua script on the pipelined connection token-api uses), mints the token
with token-api's minter, and answers; it is served with token-api's protocol. It leaves out
what the issue also asks of ``POST /v1/sessions``: API keys, the rate limit, idempotency, field
validation and problem+json, metrics, the trace context and the full dispatch record. Its ratio
to the seed-style endpoint is the most a complete session endpoint could reach on this machine,
so it is printed beside token-api's (not a target of its own). It has every saving token-api's
request path has (the lean body read and JSON answer, the collector's thresholds), so that the
difference between the two is what the features it leaves out cost.

``session_app`` is the step between the two: token-api's own session work (``sessions.
create_session``: field validation, the full dispatch record and its request entry, the trace
context, its metrics, the token and the full answer) in a handler like the minimal one, with
token-api's API-key middleware and its request-metrics middleware when asked. The cost ladder
(``bench.token_api_ladder``) measures each step.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, post
from litestar.params import JSONBody

from agentline.heap import freeze_startup_objects
from agentline.ids import random_hex
from agentline.keys import Keys
from agentline.redis_mux import MuxRedis
from agentline.settings import TokenApiSettings, load_settings
from token_api import sessions
from token_api.app import (
    GC_YOUNG_THRESHOLD,
    build_state,
    initial_state,
    lifespan_of,
    prometheus_config,
)
from token_api.auth import ApiKeyMiddleware
from token_api.dispatch_ids import new_dispatch_id
from token_api.problems import EXCEPTION_HANDLERS
from token_api.requests import LeanBodyRequest
from token_api.responses import JSONAnswer
from token_api.schemas import SessionCreate, SessionCreated
from token_api.tokens import TokenMinter

AGENT = "travel-assistant"
TTL_SECONDS = 3600
STREAM_MAXLEN = 100_000

# KEYS: the dispatch record, the requests stream. ARGV: id, room, agent, identity, maxlen.
_CREATE = """
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'room', ARGV[2], 'agent_name', ARGV[3],
           'caller_identity', ARGV[4], 'state', 'requested')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'dispatch_id', ARGV[1],
           'room', ARGV[2], 'agent_name', ARGV[3])
return 1
"""


class SessionBody(msgspec.Struct):
    room: str | None = None
    identity: str | None = None
    name: str | None = None


class MinimalSession(msgspec.Struct):
    room: str
    identity: str
    token: str
    dispatch_id: str


def minimal_app() -> Litestar:
    keys = Keys(os.environ["AGENTLINE_REDIS_NAMESPACE"])
    redis = MuxRedis(os.environ["REDIS_URL"])
    create = redis.register_script(_CREATE)
    minter = TokenMinter(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])

    @post("/minimal/sessions", status_code=201, request_class=LeanBodyRequest)
    async def create_session(data: JSONBody[SessionBody]) -> JSONAnswer[MinimalSession]:
        room = data.room or "travel-room-" + random_hex(6)
        identity = data.identity or "user-" + random_hex(6)
        dispatch_id = new_dispatch_id()
        await create(
            keys=[keys.dispatch(dispatch_id), keys.requests],
            args=[dispatch_id, room, AGENT, identity, STREAM_MAXLEN],
        )
        minted = minter.mint(
            room=room, identity=identity, ttl_seconds=TTL_SECONDS, name=data.name or ""
        )
        return JSONAnswer(MinimalSession(room, identity, minted.jwt, dispatch_id), status_code=201)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        freeze_startup_objects()  # as token-api's lifespan does
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        try:
            yield
        finally:
            await redis.aclose()

    return Litestar([create_session], lifespan=[lifespan])


def session_app(api_key: bool = False, request_metrics: bool = False) -> Litestar:
    state = build_state(load_settings(TokenApiSettings))

    @post(
        "/v1/sessions",
        status_code=201,
        request_class=LeanBodyRequest,
        middleware=[ApiKeyMiddleware] if api_key else None,
    )
    async def create_session(
        request: Request[Any, Any, Any], data: JSONBody[SessionCreate]
    ) -> JSONAnswer[SessionCreated]:
        created = await sessions.create_session(state, data, None, request.headers)
        return JSONAnswer(created, status_code=201)

    return Litestar(
        [create_session],
        state=initial_state(state),
        lifespan=[lifespan_of(state)],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[prometheus_config().middleware] if request_metrics else [],
        debug=False,
    )
