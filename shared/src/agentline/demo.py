"""`make demo`: one session against `make dev`, as a frontend does it, with its timeline."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict
from typing import Any

import httpx

from agentline.probe import ProbeResult, run_probe
from agentline.settings import DEV_API_KEY


def print_timeline(result: ProbeResult) -> None:
    print(f"\ndispatch {result.dispatch_id} in room {result.room}")
    for stage, at, delta in result.timeline():
        print(f"  {stage:<12} {at:>7} ms   (+{delta} ms)")
    if result.agent_connected_ms is not None:
        print(f"  agent '{result.agent_identity}' connected at {result.agent_connected_ms} ms")
    if result.audio_subscribed_ms is not None:
        print(f"  agent audio track subscribed at {result.audio_subscribed_ms} ms")
    print(f"  agent audio frames received: {result.audio_frames} ({result.audible_frames} audible)")


async def wait_ready(
    api_url: str, api_key: str, seconds: float, require_worker: bool = True
) -> bool:
    """Wait until the API is ready and (unless told otherwise) an agent worker registered."""
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=api_url, timeout=2.0, headers=headers) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    if not require_worker:
                        return True
                    agents = (await client.get("/v1/agents")).json().get("agents", [])
                    if any(int(a.get("workers", 0)) > 0 for a in agents):
                        return True
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.3)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument(
        "--api-url", default=os.environ.get("DEMO_API_URL", "http://127.0.0.1:8080")
    )
    parser.add_argument("--api-key", default=os.environ.get("DEMO_API_KEY", DEV_API_KEY))
    parser.add_argument("--agent", default=None, help="agent_name to dispatch (default: the API's)")
    parser.add_argument("--timeout", type=float, default=40.0, help="seconds to wait for speech")
    parser.add_argument(
        "--wait-ready",
        type=float,
        default=0.0,
        help="first wait up to N s for the API to be ready and a worker to be registered",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)
    if args.wait_ready and not asyncio.run(wait_ready(args.api_url, args.api_key, args.wait_ready)):
        print(
            f"the API at {args.api_url} was not ready within {args.wait_ready} s", file=sys.stderr
        )
        return 2

    def on_event(kind: str, payload: dict[str, Any]) -> None:
        if args.json:
            return
        if kind == "state":
            print(f"  → {payload['state']} at {payload['at_ms']} ms", flush=True)
        else:
            print(f"  · {kind} {payload}", flush=True)

    result = asyncio.run(
        run_probe(
            args.api_url,
            args.api_key,
            agent_name=args.agent,
            timeout_s=args.timeout,
            on_event=on_event,
        )
    )
    if args.json:
        print(json.dumps(asdict(result)))
        return 0 if result.ok else 1
    print_timeline(result)
    if result.ok:
        print("\nOK: the agent joined, published audio, and real audio frames arrived.")
        return 0
    print("\nFAILED: the agent did not speak.", file=sys.stderr)
    if result.reason:
        print(f"  reason: {result.reason}: {result.message}", file=sys.stderr)
        print(f"  hint:   {result.hint}", file=sys.stderr)
    if result.error:
        print(f"  error:  {result.error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
