"""token-api benchmark: POST /v1/sessions on loopback against two references.

One uvicorn process per server (uvloop, httptools, no access log), driven by wrk (installed
from Debian's packages when missing; a Python load generator otherwise) at 16 and 64
concurrent connections:

- ``token_api``: the real service, rate limit on (a budget too large to refuse), real Redis;
- ``bare``: a Litestar endpoint returning a constant (the framework's ceiling here);
- ``seed``: the naive backend this project replaces: mint with livekit-api's AccessToken and
  call CreateDispatch on the LiveKit emulator before answering.

The servers run one after another so that they do not compete for the two cores; the load
average before each run is recorded because other work on the machine shifts the figures.
When a target is missed, a py-spy profile of token-api under load names what limits it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import target, write_results

ROOT = Path(__file__).resolve().parents[1]
DURATION_S = float(os.environ.get("BENCH_TOKEN_API_DURATION", "8"))
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


def seed_app() -> Any:
    """The seed-style backend: token from AccessToken, then CreateDispatch, then the answer."""
    import datetime
    import secrets

    from litestar import Litestar, post
    from livekit import api

    url = os.environ["LIVEKIT_URL"]
    key, secret = os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"]
    clients: dict[str, api.LiveKitAPI] = {}

    @post("/seed/sessions", status_code=201)
    async def create_session(data: dict[str, Any]) -> dict[str, Any]:
        lk = clients.get("lk")
        if lk is None:
            lk = clients["lk"] = api.LiveKitAPI(url, key, secret)
        room = "seed-room-" + secrets.token_hex(6)
        identity = str(data.get("identity") or "user")
        token = (
            api.AccessToken(key, secret)
            .with_identity(identity)
            .with_name(str(data.get("name") or ""))
            .with_grants(api.VideoGrants(room_join=True, room=room))
            .with_ttl(datetime.timedelta(hours=1))
            .to_jwt()
        )
        dispatch = await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room=room, agent_name="travel-assistant")
        )
        return {"room": room, "token": token, "dispatch_id": dispatch.id}

    return Litestar([create_session])


# --- processes -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_http(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


@contextlib.contextmanager
def _process(
    cmd: list[str], env: dict[str, str], probe_url: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out)
    try:
        _wait_http(probe_url)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _uvicorn(factory: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", factory, "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip


# --- load generation -------------------------------------------------------------------------

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
done = function(summary, latency, requests)
  io.write(string.format(
    'BENCHJSON {"requests":%%d,"duration_us":%%d,"non_2xx":%%d,"socket_errors":%%d,' ..
    '"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    if found or os.geteuid() != 0:
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, check=False)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, check=False)
    return shutil.which("wrk")


def _wrk(wrk: str, url: str, connections: int, seconds: float, script: Path) -> dict[str, Any]:
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if x.startswith("BENCHJSON "))
    raw = json.loads(line.removeprefix("BENCHJSON "))
    ok = raw["requests"] - raw["non_2xx"]
    return {
        "requests": raw["requests"],
        "ok_per_s": round(ok / (raw["duration_us"] / 1e6), 1),
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }


def _python_load(url: str, connections: int, seconds: float) -> dict[str, Any]:
    """Fallback when wrk cannot be installed: keep-alive HTTP/1.1 over raw asyncio streams."""
    import asyncio
    from urllib.parse import urlparse

    parsed = urlparse(url)
    body = SESSION_BODY.encode()
    request = (
        f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Type: application/json"
        f"\r\nAuthorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    failures = [0]

    async def client(deadline: float) -> None:
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 2"):
                failures[0] += 1
        writer.close()

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*[client(started + seconds) for _ in range(connections)])
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000, 3)

    return {
        "requests": len(latencies),
        "ok_per_s": round((len(latencies) - failures[0]) / elapsed, 1),
        "non_2xx": failures[0],
        "socket_errors": 0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": pct(100),
    }


def _drive(
    wrk: str | None, url: str, connections: int, seconds: float, script: Path
) -> dict[str, Any]:
    load = os.getloadavg()[0]
    figures = (
        _wrk(wrk, url, connections, seconds, script)
        if wrk
        else _python_load(url, connections, seconds)
    )
    return {"load_average_before": round(load, 2), **figures}


# --- profile when a target is missed -----------------------------------------------------------


def _profile(pid: int, seconds: float, out: Path) -> list[dict[str, Any]]:
    """Own-time top functions of ``pid`` sampled by py-spy (empty when py-spy cannot attach)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    result = subprocess.run(
        [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200", "-f", "raw", "-o", str(out)],
        capture_output=True, check=False,
    )  # fmt: skip
    if result.returncode != 0 or not out.exists():
        return []
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        frame = stack.split(";")[-1]
        own[frame.split(" (")[0] + " " + frame.rsplit("/", 1)[-1].rstrip(")")] += int(count)
    return [{"frame": f, "share": round(n / total, 3)} for f, n in own.most_common(15)]


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
    script.write_text(_WRK_SCRIPT % {"body": SESSION_BODY, "key": API_KEY})
    figures: dict[str, Any] = {
        "load_generator": f"wrk ({wrk})" if wrk else "python asyncio (wrk unavailable)",
        "duration_s": DURATION_S,
        "token_mint": _mint_micro(),
    }
    runs: dict[str, dict[str, Any]] = {}
    profile: list[dict[str, Any]] = []
    try:
        # The emulator for the seed-style endpoint, in its own process.
        emu_port = _free_port()
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
        port = _free_port()
        servers = [
            ("bare", _uvicorn("bench.token_api:bare_app", port), common_env, "/bare"),
            (
                "token_api",
                [
                    sys.executable,
                    "-m",
                    "token_api.main",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                token_api_env,
                "/v1/sessions",
            ),
            ("seed", _uvicorn("bench.token_api:seed_app", port), common_env, "/seed/sessions"),
        ]
        with _process(emulator, {}, f"http://127.0.0.1:{emu_port}/", workdir / "emulator.log"):
            for name, cmd, env, path in servers:
                url = f"http://127.0.0.1:{port}{path}"
                with _process(
                    cmd, env, f"http://127.0.0.1:{port}/", workdir / f"{name}.log"
                ) as proc:
                    _drive(wrk, url, 16, WARMUP_S, script)
                    runs[name] = {
                        str(c): _drive(wrk, url, c, DURATION_S, script) for c in CONNECTIONS
                    }
                    if name == "token_api":
                        runs[name]["requests_in_stream"] = _stream_length(redis_url, namespace)
                        if not _token_api_met(runs):
                            profile = _profile_under_load(wrk, url, script, proc.pid, workdir)
                print(f"{name}: {json.dumps(runs[name])}", flush=True)
    finally:
        _cleanup(redis_url, namespace)
    figures["runs"] = runs
    figures["targets"] = _targets(runs)
    if profile:
        figures["token_api_profile_top"] = profile
    write_results("token_api", figures)
    return figures


def _token_api_met(runs: dict[str, dict[str, Any]]) -> bool:
    """The targets known once token-api has run (the seed-style reference runs after it)."""
    at16 = runs["token_api"]["16"]
    bare16 = runs.get("bare", {}).get("16", {}).get("ok_per_s", 0.0)
    return (
        at16["ok_per_s"] >= TARGETS["sessions_per_s_at_16"]
        and at16["p99_ms"] <= TARGETS["p99_ms_at_16"]
        and (not bare16 or at16["ok_per_s"] / bare16 >= TARGETS["ratio_to_bare_at_16"])
    )


def _profile_under_load(
    wrk: str | None, url: str, script: Path, pid: int, workdir: Path
) -> list[dict[str, Any]]:
    import threading

    load = threading.Thread(target=_drive, args=(wrk, url, 16, 7.0, script))
    load.start()
    time.sleep(1.0)
    top = _profile(pid, 5.0, workdir / "profile.txt")
    load.join()
    return top


def _targets(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    api16 = runs["token_api"]["16"]
    bare16 = runs.get("bare", {}).get("16", {}).get("ok_per_s", 0.0)
    seed16 = runs.get("seed", {}).get("16", {}).get("ok_per_s", 0.0)
    out = {
        "sessions_per_s_at_16": target(api16["ok_per_s"], TARGETS["sessions_per_s_at_16"], True),
        "p99_ms_at_16": target(api16["p99_ms"], TARGETS["p99_ms_at_16"]),
        "ratio_to_bare_at_16": target(
            round(api16["ok_per_s"] / bare16, 3) if bare16 else 0.0,
            TARGETS["ratio_to_bare_at_16"],
            True,
        ),
        "ratio_to_seed_at_16": target(
            round(api16["ok_per_s"] / seed16, 2) if seed16 else 0.0,
            TARGETS["ratio_to_seed_at_16"],
            True,
        ),
    }
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
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match="{" + namespace + "}*", count=5000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


if __name__ == "__main__":
    run()
