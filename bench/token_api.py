"""token-api benchmark: POST /v1/sessions on loopback against two references.

One uvicorn process per server (uvloop, httptools, no access log), driven by wrk (installed
from Debian's packages when missing; a Python load generator otherwise) at 16 and 64
concurrent connections:

- ``token_api``: the real service, rate limit on (a budget too large to refuse), real Redis;
- ``bare``: a Litestar endpoint returning a constant (the framework's ceiling here), on stock
  uvicorn httptools, as the targets define it;
- ``bare_same_protocol``: the same endpoint on the protocol token-api is served with
  (``token_api.serving``: one socket write per response), so that the ratio can also be read
  without that server-side gain (reported beside the targets, not one of them);
- ``minimal``: the least a session endpoint does (``bench.token_api_minimal``: body, one atomic
  Redis write, the token; no keys, limit, idempotency, validation or metrics), served like
  token-api: its ratio to the seed is the most a complete endpoint could reach here;
- ``seed`` (``bench.token_api_seed``): the naive backend this project replaces: mint with livekit-api's AccessToken and
  call CreateDispatch on the LiveKit emulator before answering, on one LiveKit client kept
  for the process (the target's reference);
- ``seed_client_per_call``: the same with a LiveKit client made and closed per call, as in
  LiveKit's dispatch example (printed beside the target, not one).

All servers are started at once and take turns under load (``http_load.alternate``): each
runs alone, so none competes for the two cores, and in rounds, because this host's speed
drifts from minute to minute: the ratios are the median of ratios taken within a round, where
both servers met the same drift. The load average before the first round and each server's
CPU time per request (steadier than throughput on shared cores) are recorded.
When a target is missed, a py-spy profile of token-api under load names what limits it.
After the load runs, the cost ladder (``bench.token_api_ladder``) splits token-api's CPU per
session, measured in process, into steps from the minimal endpoint up.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

from bench import token_api_ladder
from bench.common import target, write_results
from bench.http_load import (
    alternate,
    drive,
    ensure_wrk,
    free_port,
    py_spy_top,
    serving,
    write_wrk_script,
)

DURATION_S = float(os.environ.get("BENCH_TOKEN_API_DURATION", "8"))  # per server and load
# The servers take turns, each for DURATION_S / ROUNDS at a time (see http_load.alternate).
ROUNDS = int(os.environ.get("BENCH_TOKEN_API_ROUNDS", "4"))
WARMUP_S = 2.0
CONNECTIONS = (16, 64)
API_KEY = "bench-api-key-0123456789"
LIVEKIT_KEY = "benchkey"
LIVEKIT_SECRET = "bench-livekit-secret-0123456789abcdef"
SESSION_BODY = '{"identity":"bench-user","name":"Bench"}'

TARGETS = {
    "sessions_per_s_at_16": 3500.0,
    "p99_ms_at_16": 15.0,
    "ratio_to_bare_at_16": 0.35,
    "ratio_to_seed_at_16": 5.0,
}


# --- the reference servers (imported by uvicorn in their own process) -----------------------


def bare_app() -> Any:
    """The framework's ceiling: routing, one tiny JSON answer, nothing else."""
    from litestar import Litestar, post

    @post("/bare", status_code=201)
    async def bare() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([bare])


# --- processes -------------------------------------------------------------------------------


def _uvicorn(factory: str, port: int, http: str = "httptools") -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", factory, "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--loop", "uvloop", "--http", http, "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip


SAME_PROTOCOL = "token_api.serving:CoalescingHttpToolsProtocol"  # what token_api.main serves with


def _token_api_command(port: int) -> list[str]:
    return [sys.executable, "-m", "token_api.main", "--host", "127.0.0.1", "--port", str(port)]


# --- the run -------------------------------------------------------------------------------------


def _mint_micro() -> dict[str, float]:
    import datetime

    from livekit.api import AccessToken, VideoGrants

    from token_api.tokens import TokenMinter

    def access_token() -> str:
        return (
            AccessToken(LIVEKIT_KEY, LIVEKIT_SECRET)
            .with_identity("user-1")
            .with_name("Bench")
            .with_grants(VideoGrants(room_join=True, room="travel-room-abc"))
            .with_ttl(datetime.timedelta(hours=1))
            .to_jwt()
        )

    minter = TokenMinter(LIVEKIT_KEY, LIVEKIT_SECRET)
    n = 5000
    lk = min(timeit.repeat(access_token, number=n, repeat=3)) / n * 1e6
    ours = min(
        timeit.repeat(
            lambda: minter.mint(room="travel-room-abc", identity="user-1", ttl_seconds=3600, name="Bench"),
            number=n,
            repeat=3,
        )
    ) / n * 1e6  # fmt: skip
    return {"access_token_us": round(lk, 1), "token_minter_us": round(ours, 1)}


def run() -> dict[str, Any]:
    import redis

    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()  # a real Redis is required
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="bench-token-api-"))
    script = workdir / "post.lua"
    write_wrk_script(script, SESSION_BODY, API_KEY)
    figures: dict[str, Any] = {
        "load_generator": f"wrk ({wrk})" if wrk else "python asyncio (wrk unavailable)",
        "duration_s": DURATION_S,
        "token_mint": _mint_micro(),
    }
    runs: dict[str, dict[str, Any]] = {}
    profile: list[dict[str, Any]] = []
    try:
        # The emulator for the seed-style endpoint, in its own process.
        emu_port = free_port()
        emulator = [
            sys.executable, "-m", "livekit_emulator.main", "--host", "127.0.0.1",
            "--port", str(emu_port), "--keys", f"{LIVEKIT_KEY}:{LIVEKIT_SECRET}",
            "--log-level", "WARNING",
        ]  # fmt: skip
        common_env = {
            "LIVEKIT_URL": f"http://127.0.0.1:{emu_port}",
            "LIVEKIT_API_KEY": LIVEKIT_KEY,
            "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
            "LOG_LEVEL": "WARNING",
        }
        token_api_env = {
            **common_env,
            "AGENTLINE_ENV": "test",
            "REDIS_URL": redis_url,
            "AGENTLINE_REDIS_NAMESPACE": namespace,
            "TOKEN_API_API_KEYS": API_KEY,
            "TOKEN_API_RATE_LIMIT_PER_MINUTE": "100000000",
        }
        servers = [
            ("bare", lambda port: _uvicorn("bench.token_api:bare_app", port), common_env, "/bare"),
            (
                "bare_same_protocol",
                lambda port: _uvicorn("bench.token_api:bare_app", port, SAME_PROTOCOL),
                common_env,
                "/bare",
            ),
            (
                "token_api",
                _token_api_command,
                token_api_env,
                "/v1/sessions",
            ),
            (
                "minimal",
                lambda port: _uvicorn("bench.token_api_minimal:minimal_app", port, SAME_PROTOCOL),
                {**token_api_env, "AGENTLINE_REDIS_NAMESPACE": f"{namespace}-minimal"},
                "/minimal/sessions",
            ),
            (
                "seed",
                lambda port: _uvicorn("bench.token_api_seed:seed_app", port),
                common_env,
                "/seed/sessions",
            ),
            (
                "seed_client_per_call",
                lambda port: _uvicorn("bench.token_api_seed:seed_client_per_call_app", port),
                common_env,
                "/seed/sessions",
            ),
        ]
        with contextlib.ExitStack() as running:
            running.enter_context(
                serving(emulator, {}, f"http://127.0.0.1:{emu_port}/", workdir / "emulator.log")
            )
            # Every server up at once (an idle one takes no CPU), then driven in turn.
            live: dict[str, tuple[str, int]] = {}
            for name, command, env, path in servers:
                port = free_port()
                proc = running.enter_context(
                    serving(
                        command(port), env, f"http://127.0.0.1:{port}/", workdir / f"{name}.log"
                    )
                )
                live[name] = (f"http://127.0.0.1:{port}{path}", proc.pid)
                drive(wrk, live[name][0], 16, WARMUP_S, script, SESSION_BODY, API_KEY)
            for connections in CONNECTIONS:
                combined = alternate(
                    wrk, live, connections, ROUNDS, DURATION_S / ROUNDS, script, SESSION_BODY,
                    API_KEY,
                )  # fmt: skip
                for name, result in combined.items():
                    runs.setdefault(name, {})[str(connections)] = result
            runs["token_api"]["requests_in_stream"] = _stream_length(redis_url, namespace)
            for name in live:
                print(f"{name}: {json.dumps(runs[name])}", flush=True)
            if not _token_api_met(runs):
                url, pid = live["token_api"]
                profile = _profile_under_load(wrk, url, script, pid, workdir)
        # In this process, with the servers stopped: nothing else competes for the cores.
        figures["cost_ladder_in_process"] = token_api_ladder.measure(
            {**token_api_env, "AGENTLINE_REDIS_NAMESPACE": f"{namespace}-ladder"},
            SESSION_BODY,
            API_KEY,
        )
    finally:
        _cleanup(redis_url, namespace)
        _cleanup(redis_url, f"{namespace}-minimal")
        _cleanup(redis_url, f"{namespace}-ladder")
    figures["runs"] = runs
    figures["targets"] = _targets(runs)
    if profile:
        figures["token_api_profile_top"] = profile
    write_results("token_api", figures)
    return figures


def _token_api_met(runs: dict[str, dict[str, Any]]) -> bool:
    """The targets token-api meets without the seed-style reference (the profile is for them)."""
    targets = _targets(runs)
    return all(
        targets[name]["met"]
        for name in ("sessions_per_s_at_16", "p99_ms_at_16", "ratio_to_bare_at_16")
    )


def _profile_under_load(
    wrk: str | None, url: str, script: Path, pid: int, workdir: Path
) -> list[dict[str, Any]]:
    import threading

    load = threading.Thread(target=drive, args=(wrk, url, 16, 7.0, script, SESSION_BODY, API_KEY))
    load.start()
    time.sleep(1.0)
    top = py_spy_top(pid, 5.0, workdir / "profile.txt")
    load.join()
    return top


def round_ratios(runs: dict[str, dict[str, Any]], server: str, reference: str) -> list[float]:
    """``server``'s throughput at 16 over ``reference``'s, round by round."""
    ours = runs.get(server, {}).get("16", {}).get("per_round_ok_per_s", [])
    theirs = runs.get(reference, {}).get("16", {}).get("per_round_ok_per_s", [])
    return [a / b for a, b in zip(ours, theirs, strict=False) if b]


def round_ratio(runs: dict[str, dict[str, Any]], server: str, reference: str) -> float:
    """The median of :func:`round_ratios` (0 when either server is missing)."""
    ratios = round_ratios(runs, server, reference)
    return statistics.median(ratios) if ratios else 0.0


def _targets(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    api16 = runs["token_api"]["16"]
    out: dict[str, Any] = {
        "sessions_per_s_at_16": target(api16["ok_per_s"], TARGETS["sessions_per_s_at_16"], True),
        # The worst round's p99: a target on the tail is not met by a median of tails.
        "p99_ms_at_16": target(api16["p99_ms_worst_round"], TARGETS["p99_ms_at_16"]),
        "ratio_to_bare_at_16": target(
            round(round_ratio(runs, "token_api", "bare"), 3), TARGETS["ratio_to_bare_at_16"], True
        ),
        "ratio_to_seed_at_16": target(
            round(round_ratio(runs, "token_api", "seed"), 2), TARGETS["ratio_to_seed_at_16"], True
        ),
    }
    if "bare_same_protocol" in runs:
        ratio = round_ratio(runs, "token_api", "bare_same_protocol")
        out["info_ratio_to_bare_same_protocol_at_16"] = round(ratio, 3)
    if "minimal" in runs and "seed" in runs:
        ratio = round_ratio(runs, "minimal", "seed")
        out["info_minimal_endpoint_ratio_to_seed_at_16"] = round(ratio, 2)
    if "seed_client_per_call" in runs:
        ratio = round_ratio(runs, "token_api", "seed_client_per_call")
        out["info_ratio_to_seed_with_a_client_per_call_at_16"] = round(ratio, 2)
    out["info_ratio_to_seed_per_round_at_16"] = [
        round(ratio, 2) for ratio in round_ratios(runs, "token_api", "seed")
    ]
    return out


def _stream_length(redis_url: str, namespace: str) -> int:
    import redis

    from agentline.keys import Keys

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.xlen(Keys(namespace).requests))
    finally:
        client.close()


def _cleanup(redis_url: str, namespace: str) -> None:
    import asyncio

    from agentline.keys import Keys
    from agentline.redis_conn import delete_namespace, make_client

    async def drop() -> None:
        client = make_client(redis_url)
        try:
            await delete_namespace(client, Keys(namespace))
        finally:
            await client.aclose()

    asyncio.run(drop())


if __name__ == "__main__":
    run()
