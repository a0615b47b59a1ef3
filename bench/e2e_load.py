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

import httpx

from agentline.demo import wait_ready
from agentline.probe import run_probe
from agentline.settings import DEV_API_KEY

TERMINAL = {"speaking", "ended", "failed", "cancelled"}


async def _api_session(client: httpx.AsyncClient, index: int) -> str:
    response = await client.post("/v1/sessions", json={"identity": f"bench-{index}"})
    response.raise_for_status()
    return str(response.json()["dispatch"]["id"])


async def _wait_records(
    client: httpx.AsyncClient, ids: list[str], deadline_s: float
) -> dict[str, dict[str, Any]]:
    """Poll each dispatch until it reached speaking or a terminal state (or the deadline)."""
    records: dict[str, dict[str, Any]] = {}
    pending = list(ids)
    deadline = time.monotonic() + deadline_s
    while pending and time.monotonic() < deadline:
        batch, pending = pending[:100], pending[100:]
        replies = await asyncio.gather(*(client.get(f"/v1/dispatches/{i}") for i in batch))
        for dispatch_id, reply in zip(batch, replies, strict=True):
            body = reply.json()
            timestamps = body.get("timestamps", {})
            if body.get("state") in TERMINAL or "speaking" in timestamps:
                records[dispatch_id] = body
            else:
                pending.append(dispatch_id)
        if pending:
            await asyncio.sleep(0.2)
    for dispatch_id in pending:
        records[dispatch_id] = (await client.get(f"/v1/dispatches/{dispatch_id}")).json()
    return records


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if not await wait_ready(args.api_url, args.api_key, 120, require_worker=args.callers):
        raise SystemExit("the system did not become ready within 120 s")
    headers = {"Authorization": f"Bearer {args.api_key}"}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(
        base_url=args.api_url, headers=headers, timeout=30.0, limits=limits
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
                coroutine = _api_session(client, index)
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
        records = await _wait_records(client, ids, args.timeout)
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
