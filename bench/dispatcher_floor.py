"""The floor under the dispatcher's CPU per dispatch: what the libraries it must use cost on
this machine before any of its own work.

- ``livekit-api`` (the only way the dispatcher may talk to LiveKit): CreateRoom with the agent
  in the room's configuration and the ListDispatch that confirms it, the client's CPU per call
  (16 in flight, call tokens reused as the dispatcher does), against an emulator of its own
  with no workers and no webhooks;
- one LiveKit webhook served by aiohttp and checked as ``livekit-api``'s ``WebhookReceiver``
  does (``TokenVerifier``, then the body's hash), with nothing else in the handler: the
  server's CPU per webhook, in its own process under wrk (or the Python load generator);
- the least Redis work the lifecycle asks for, on the dispatcher's pipelined connection
  (``agentline.redis_mux``): the request read from the stream in batches and acknowledged,
  and for each of its four transitions the record's state, the event for the SSE stream and
  the stage deadline in one script call.

The floor is calls per dispatch × call cost + webhooks per dispatch × webhook cost + that
Redis work, with the counts taken from the dispatcher's own metrics in the steady phase.
The lifecycle's logic, metrics, logs and traces come on top of it.

``python -m bench.dispatcher_floor PORT`` serves the webhook endpoint (the benchmark starts it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from livekit import api
from redis.asyncio import Redis

from agentline.redis_mux import MuxRedis
from bench.http_load import (
    ROOT,
    drive,
    ensure_wrk,
    process_cpu_seconds,
    wait_http,
    write_wrk_script,
)
from dispatcher.livekit_auth import CachedAuthHeaders

GOLDEN_WEBHOOKS = ROOT / "emulator/tests/golden/webhooks/main_dispatch_agent_caller.json"
KEY = "floorkey"
SECRET = "floor-secret-0123456789abcdef0123456789abcdef"
IN_FLIGHT = 16
CALL_PAIRS = 1500
WEBHOOK_SECONDS = 4.0


def _agent_joined_body() -> str:
    """A real server's participant_joined webhook for an agent (the golden trace)."""
    recorded = json.loads(GOLDEN_WEBHOOKS.read_text())["webhooks"]
    joined = next(w["body"] for w in recorded if w["body"]["event"] == "participant_joined")
    return json.dumps(joined, separators=(",", ":"))


def _signed(body: str) -> str:
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return api.AccessToken(KEY, SECRET).with_sha256(digest).to_jwt()


def _check(verifier: api.TokenVerifier, body: str, token: str) -> bool:
    """What WebhookReceiver.receive checks before it parses: the signature, the body's hash."""
    claims = verifier.verify(token)
    return hashlib.sha256(body.encode()).digest() == base64.b64decode(claims.sha256 or "")


def webhook_app(api_key: str, api_secret: str) -> web.Application:
    verifier = api.TokenVerifier(api_key, api_secret)

    async def checked(request: web.Request) -> web.Response:
        body = await request.text()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not _check(verifier, body, token):
            return web.Response(status=401, text="hash mismatch\n")
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_post("/webhook", checked)
    return app


async def webhook_cpu_us(port: int) -> float:
    """Server CPU per checked webhook, the server in its own process."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.dispatcher_floor", str(port), cwd=ROOT
    )
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/")
        body = _agent_joined_body()
        token = _signed(body)
        script = write_wrk_script(Path(tempfile.mkdtemp()) / "webhook.lua", body, token)
        url = f"http://127.0.0.1:{port}/webhook"
        wrk = ensure_wrk()
        await asyncio.to_thread(drive, wrk, url, IN_FLIGHT, 1.0, script, body, token)  # warm-up
        before = process_cpu_seconds(server.pid)
        figures = await asyncio.to_thread(
            drive, wrk, url, IN_FLIGHT, WEBHOOK_SECONDS, script, body, token
        )
        after = process_cpu_seconds(server.pid)
        if figures["non_2xx"] or not figures["requests"]:
            raise RuntimeError(f"the webhook floor server refused webhooks: {figures}")
        if before is None or after is None:
            raise RuntimeError("the webhook floor server's CPU time cannot be read here")
        return (after - before) / figures["requests"] * 1e6
    finally:
        server.terminate()
        await server.wait()


def webhook_check_cpu_us(rounds: int = 5000) -> float:
    """The check alone, in a loop in this process: warm caches make it a lower bound."""
    verifier = api.TokenVerifier(KEY, SECRET)
    body = _agent_joined_body()
    token = _signed(body)
    started = time.process_time()
    for _ in range(rounds):
        if not _check(verifier, body, token):
            raise RuntimeError("the webhook floor check refused its own webhook")
    return (time.process_time() - started) / rounds * 1e6


async def livekit_call_cpu_us(livekit_url: str, api_key: str, api_secret: str) -> float:
    """This process's CPU per livekit-api call: CreateRoom with the agent, then ListDispatch."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    lk = api.LiveKitAPI(livekit_url, api_key, api_secret, session=session, failover=False)
    CachedAuthHeaders(api_key, api_secret).install(lk.room, lk.agent_dispatch)
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def pair(room: str) -> None:
        async with slots:
            await lk.room.create_room(
                api.CreateRoomRequest(
                    name=room, agents=[api.RoomAgentDispatch(agent_name="floor", metadata="{}")]
                )
            )
            await lk.agent_dispatch.list_dispatch(room)

    try:
        await asyncio.gather(*(pair(f"floor-warm-{i}") for i in range(200)))
        started = time.process_time()
        await asyncio.gather(*(pair(f"floor-{i}") for i in range(CALL_PAIRS)))
        return (time.process_time() - started) / (2 * CALL_PAIRS) * 1e6
    finally:
        await lk.aclose()
        await session.close()


# One atomic write per transition: the record's state, its event, its next stage deadline.
_TRANSITION = """
redis.call('HSET', KEYS[1], 'state', ARGV[1])
redis.call('XADD', KEYS[2], '*', 'state', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
"""


async def redis_cpu_us_per_dispatch(redis_url: str, dispatches: int = 3000) -> float:
    """This process's CPU for the least Redis work of one dispatch (see the module's doc)."""
    prefix = f"bench-floor-{uuid.uuid4().hex[:8]}"
    stream, group = f"{prefix}:requests", "dispatchers"
    writer = Redis.from_url(redis_url)
    mux = MuxRedis(redis_url)
    try:
        await writer.xgroup_create(stream, group, id="0", mkstream=True)
        async with writer.pipeline(transaction=False) as pipe:
            for n in range(dispatches):
                pipe.xadd(stream, {"dispatch_id": f"d{n}", "room": f"room-{n}"})
            await pipe.execute()

        transition = mux.register_script(_TRANSITION)
        deadlines = f"{prefix}:deadlines"

        async def lifecycle(entry_id: str, dispatch_id: str) -> None:
            for stage in ("dispatched", "assigned", "joined", "speaking"):
                await transition(
                    keys=[f"{prefix}:d:{dispatch_id}", f"{prefix}:events:{dispatch_id}", deadlines],
                    args=[stage, dispatch_id, time.time() + 10],
                )
            await mux.execute("XACK", stream, group, entry_id)

        started = time.process_time()
        while True:
            reply = await mux.execute(
                "XREADGROUP", "GROUP", group, "floor", "COUNT", "64", "STREAMS", stream, ">"
            )
            if not reply:
                break
            entries = reply[0][1]
            await asyncio.gather(*(lifecycle(i, dict(zip(f[::2], f[1::2], strict=True))["dispatch_id"])
                                   for i, f in entries))  # fmt: skip
        return (time.process_time() - started) / dispatches * 1e6
    finally:
        keys = [key async for key in writer.scan_iter(f"{prefix}:*", count=1000)]
        for first in range(0, len(keys), 500):
            await writer.delete(*keys[first : first + 500])
        await mux.aclose()
        await writer.aclose()


def floor_figures(
    call_us: float,
    served_webhook_us: float,
    check_us: float,
    redis_us: float,
    calls_per_dispatch: float,
    webhooks_per_dispatch: float,
) -> dict[str, Any]:
    calls_ms = calls_per_dispatch * call_us / 1000
    served_ms = calls_ms + webhooks_per_dispatch * served_webhook_us / 1000
    return {
        "livekit_api_call_cpu_us": round(call_us, 1),
        "webhook_served_and_checked_cpu_us": round(served_webhook_us, 1),
        "webhook_check_only_cpu_us": round(check_us, 1),
        "least_redis_work_cpu_us_per_dispatch": round(redis_us, 1),
        "livekit_calls_per_dispatch": round(calls_per_dispatch, 2),
        "webhooks_per_dispatch": round(webhooks_per_dispatch, 2),
        # The calls and the checks alone (livekit-api's share, not to be done without).
        "livekit_api_only_ms_per_dispatch": round(
            calls_ms + webhooks_per_dispatch * check_us / 1000, 3
        ),
        # …with each webhook served by aiohttp…
        "with_webhooks_served_ms_per_dispatch": round(served_ms, 3),
        # …and the least Redis work: before any lifecycle logic, metrics, logs or traces.
        "floor_ms_per_dispatch": round(served_ms + redis_us / 1000, 3),
    }


if __name__ == "__main__":
    web.run_app(
        webhook_app(KEY, SECRET),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
    )
