"""Where token-api's CPU per session goes: steps from the minimal endpoint up to token-api.

Each step is an ASGI app driven in this process, with no HTTP server and no load generator, by
16 concurrent callers posting the benchmark's session body. Redis is real, but its own CPU is
not counted. The figure for a step is this process's CPU time per request: the best of
``ROUNDS`` rounds, with the steps taking turns within each round. One step's cost is its figure
minus the figure of the step before it.

- ``minimal``: the minimal endpoint (``bench.token_api_minimal.minimal_app``), the floor;
- ``session_work``: token-api's own session work in a handler like the minimal one;
- ``api_key``: the same, plus token-api's API-key middleware (key check, rate limit);
- ``request_metrics``: the same, plus the request-metrics middleware (Prometheus plugin);
- ``token_api``: token-api itself. It adds what the last step leaves out: the controller,
  the Idempotency-Key header as a Litestar parameter, and the idempotency plumbing.

The HTTP server's own cost per request is not counted in any step. The load runs in
``bench.token_api`` measure it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

CONCURRENCY = 16
REQUESTS_PER_ROUND = int(os.environ.get("BENCH_TOKEN_API_LADDER_REQUESTS", "4000"))
ROUNDS = int(os.environ.get("BENCH_TOKEN_API_LADDER_ROUNDS", "5"))


def _steps() -> list[tuple[str, Callable[[], Any], str]]:
    from bench.token_api_minimal import minimal_app, session_app
    from token_api.app import create_app

    return [
        ("minimal", minimal_app, "/minimal/sessions"),
        ("session_work", session_app, "/v1/sessions"),
        ("api_key", lambda: session_app(api_key=True), "/v1/sessions"),
        (
            "request_metrics",
            lambda: session_app(api_key=True, request_metrics=True),
            "/v1/sessions",
        ),
        ("token_api", create_app, "/v1/sessions"),
    ]


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    """The app's lifespan, as a server runs it (startup before the first request)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"lifespan startup failed: {started}")
    try:
        yield
    finally:
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


def _caller(app: Any, path: str, body: bytes, api_key: str) -> Callable[[int], Any]:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"x-api-key", api_key.encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    request = {"type": "http.request", "body": body, "more_body": False}
    failures: list[int] = []

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 201:
            failures.append(message["status"])

    async def call(count: int) -> None:
        for _ in range(count):
            scope = {
                "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1", "scheme": "http", "method": "POST", "path": path,
                "raw_path": path.encode(), "root_path": "", "query_string": b"",
                "headers": headers, "server": ("127.0.0.1", 8080),
                "client": ("127.0.0.1", 50000), "state": {},
            }  # fmt: skip
            await app(scope, receive, send)
        if failures:
            raise RuntimeError(f"{path}: answered {sorted(set(failures))}, not 201")

    return call


async def _cpu_us_per_request(call: Callable[[int], Any], requests: int) -> float:
    per_caller = requests // CONCURRENCY
    started = time.process_time()
    await asyncio.gather(*(call(per_caller) for _ in range(CONCURRENCY)))
    return (time.process_time() - started) / (per_caller * CONCURRENCY) * 1e6


async def _measure(body: bytes, api_key: str) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    async with contextlib.AsyncExitStack() as apps:
        callers = {}
        for name, factory, path in _steps():
            app = factory()
            await apps.enter_async_context(running(app))
            callers[name] = _caller(app, path, body, api_key)
            await callers[name](REQUESTS_PER_ROUND // 10)  # warm: scripts loaded, caches filled
        for _ in range(ROUNDS):
            for name, call in callers.items():
                figures.setdefault(name, []).append(
                    await _cpu_us_per_request(call, REQUESTS_PER_ROUND)
                )
    return figures


def measure(env: dict[str, str], body: str, api_key: str) -> dict[str, Any]:
    """The ladder, with token-api's settings from ``env``; the caller removes its Redis keys."""
    import uvloop

    threshold = gc.get_threshold()
    try:
        with _environment(env):
            rounds = uvloop.run(_measure(body.encode(), api_key))
    finally:
        gc.unfreeze()  # the apps' lifespans froze this process's objects
        gc.set_threshold(*threshold)
    best = {name: round(min(values), 1) for name, values in rounds.items()}
    names = list(best)
    return {
        "cpu_us_per_request": best,
        "step_cost_us": {
            name: round(best[name] - best[previous], 1)
            for previous, name in itertools.pairwise(names)
        },
        "requests_per_round": REQUESTS_PER_ROUND,
        "rounds": ROUNDS,
        "concurrency": CONCURRENCY,
    }
