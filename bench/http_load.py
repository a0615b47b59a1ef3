"""HTTP load for the benchmarks: the servers under it (a free port, a process started and
waited for), wrk (installed from Debian's packages when missing, as root) or a Python
keep-alive generator, servers taking turns under it, and a py-spy own-time profile of a server
under it."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_http(url: str, seconds: float = 30.0) -> None:
    """Until ``url`` answers anything at all (an error status too)."""
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
def serving(
    cmd: list[str], env: dict[str, str], probe_url: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (output to ``log``) once ``probe_url`` answers; stopped on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out)
    try:
        wait_http(probe_url)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


WRK_SCRIPT = """
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


def _python_load(
    url: str, connections: int, seconds: float, body_text: str, api_key: str
) -> dict[str, Any]:
    """Fallback when wrk cannot be installed: keep-alive HTTP/1.1 over raw asyncio streams."""
    import asyncio
    from urllib.parse import urlparse

    parsed = urlparse(url)
    body = body_text.encode()
    request = (
        f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Type: application/json"
        f"\r\nAuthorization: Bearer {api_key}\r\nContent-Length: {len(body)}\r\n\r\n"
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


def write_wrk_script(path: Path, body: str, api_key: str) -> Path:
    path.write_text(WRK_SCRIPT % {"body": body, "key": api_key})
    return path


def drive(
    wrk: str | None,
    url: str,
    connections: int,
    seconds: float,
    script: Path,
    body: str,
    api_key: str,
) -> dict[str, Any]:
    """POST ``body`` for ``seconds`` over ``connections`` keep-alive connections (wrk with
    ``script`` when there is one, else a Python generator); throughput and latency."""
    load = os.getloadavg()[0]
    figures = (
        _wrk(wrk, url, connections, seconds, script)
        if wrk
        else _python_load(url, connections, seconds, body, api_key)
    )
    return {"load_average_before": round(load, 2), **figures}


def py_spy_top(pid: int, seconds: float, out: Path) -> list[dict[str, Any]]:
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


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alternate(
    wrk: str | None,
    servers: dict[str, tuple[str, int]],
    connections: int,
    rounds: int,
    seconds: float,
    script: Path,
    body: str,
    api_key: str,
) -> dict[str, dict[str, Any]]:
    """Drive each server (name → (url, pid)) for ``seconds`` in turn, ``rounds`` times, the
    order rotated each round. The host's speed drifts from minute to minute: compared within a
    round, two servers meet the same drift, so ratios are taken per round (``per_round``).
    Per server: throughput over all its rounds, the median round's latency percentiles and
    the worst round's p99, and its CPU time per answered request."""
    names = list(servers)
    per_round: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for n in range(rounds):
        for name in names[n % len(names) :] + names[: n % len(names)]:
            url, pid = servers[name]
            before = process_cpu_seconds(pid)
            figures = drive(wrk, url, connections, seconds, script, body, api_key)
            after = process_cpu_seconds(pid)
            figures["cpu_seconds"] = (
                after - before if before is not None and after is not None else None
            )
            per_round[name].append(figures)
    return {name: _combined(runs) for name, runs in per_round.items()}


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in runs)
    ok = sum(r["ok_per_s"] for r in runs) / len(runs)
    cpu = [r["cpu_seconds"] for r in runs]
    out: dict[str, Any] = {
        "load_average_before": runs[0]["load_average_before"],
        "requests": requests,
        "ok_per_s": round(ok, 1),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        **{
            key: round(statistics.median(r[key] for r in runs), 3)
            for key in ("p50_ms", "p90_ms", "p99_ms")
        },
        "p99_ms_worst_round": max(r["p99_ms"] for r in runs),
        "max_ms": max(r["max_ms"] for r in runs),
        "per_round_ok_per_s": [r["ok_per_s"] for r in runs],
    }
    if None not in cpu and requests:
        out["server_cpu_us_per_request"] = round(sum(cpu) / requests * 1e6, 1)
    return out
