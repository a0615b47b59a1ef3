"""Load generator for the end-to-end benchmark; runs next to the system (inside its network
namespace) and prints one JSON document: every session's dispatch record timestamps.

- ``--callers``: each session is a real caller (the LiveKit SDK) that joins, publishes a
  microphone and hangs up once the agent speaks.
- otherwise sessions are API calls only (POST /v1/sessions), for simulated workers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp

from agentline.demo import wait_ready
from agentline.probe import run_probe
from agentline.settings import DEV_API_KEY

TERMINAL = {"speaking", "ended", "failed", "cancelled"}
# Records are read only after the offered load (their timestamps are the server's, so reading
# late loses nothing) and a few at a time: polling 2,000 records every 0.2 s while the last
# dispatches run took CPU from the system under test on a 2-core machine.
COLLECT_AFTER_S = 2.0
COLLECT_CONCURRENCY = 20
COLLECT_INTERVAL_S = 1.0


async def _api_session(client: aiohttp.ClientSession, url: str, index: int) -> str:
    # aiohttp rather than httpx: at 200 requests/s httpx cost this process about twice the CPU,
    # taken from the services on the same cores.
    async with client.post(f"{url}/v1/sessions", json={"identity": f"bench-{index}"}) as reply:
        reply.raise_for_status()
        return str((await reply.json())["dispatch"]["id"])


async def _read(client: aiohttp.ClientSession, url: str, dispatch_id: str) -> dict[str, Any]:
    async with client.get(f"{url}/v1/dispatches/{dispatch_id}") as reply:
        body: dict[str, Any] = await reply.json()
        return body


async def _wait_records(
    client: aiohttp.ClientSession, url: str, ids: list[str], deadline_s: float, ended: bool
) -> dict[str, dict[str, Any]]:
    """Read each dispatch until it reached speaking (with ``ended``: a terminal state, when
    its caller hung up and the worker freed the slot) or the deadline."""
    records: dict[str, dict[str, Any]] = {}
    pending = list(ids)
    deadline = time.monotonic() + deadline_s
    gate = asyncio.Semaphore(COLLECT_CONCURRENCY)

    async def read(dispatch_id: str) -> dict[str, Any]:
        async with gate:
            return await _read(client, url, dispatch_id)

    await asyncio.sleep(COLLECT_AFTER_S)
    while pending:
        bodies = await asyncio.gather(*(read(i) for i in pending))
        final = time.monotonic() >= deadline
        still: list[str] = []
        for dispatch_id, body in zip(pending, bodies, strict=True):
            state = body.get("state")
            speaking = "speaking" in body.get("timestamps", {})
            if final or state in TERMINAL - {"speaking"} or (speaking and not ended):
                records[dispatch_id] = body
            else:
                still.append(dispatch_id)
        pending = still
        if pending:
            await asyncio.sleep(COLLECT_INTERVAL_S)
    return records


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if not await wait_ready(args.api_url, args.api_key, 120, require_worker=args.callers):
        raise SystemExit("the system did not become ready within 120 s")
    headers = {"Authorization": f"Bearer {args.api_key}"}
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(
        headers=headers, connector=connector, timeout=timeout
    ) as client:
        started = time.monotonic()
        tasks: list[asyncio.Task[Any]] = []
        for index in range(args.sessions):
            delay = started + index / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if args.callers:
                coroutine: Any = run_probe(
                    args.api_url, args.api_key, timeout_s=args.timeout, min_audible_frames=0
                )
            else:
                coroutine = _api_session(client, args.api_url, index)
            tasks.append(asyncio.create_task(coroutine))
        offered_s = time.monotonic() - started
        results = await asyncio.gather(*tasks, return_exceptions=True)
        ids = [
            (r.dispatch_id if args.callers else r)
            for r in results
            if not isinstance(r, BaseException) and (r.dispatch_id if args.callers else r)
        ]
        errors = [repr(r) for r in results if isinstance(r, BaseException)]
        if args.callers:
            errors += [r.error for r in results if not isinstance(r, BaseException) and r.error]
        records = await _wait_records(client, args.api_url, ids, args.timeout, args.callers)
    return {
        "sessions": args.sessions,
        "rate_per_s": args.rate,
        "offered_seconds": round(offered_s, 2),
        "errors": errors[:20],
        "error_count": len(errors),
        "records": list(records.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api-url", default="http://127.0.0.1:8080")
    parser.add_argument("--api-key", default=DEV_API_KEY)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rate", type=float, default=2.0, help="sessions per second")
    parser.add_argument("--callers", action="store_true", help="real callers over WebRTC")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
