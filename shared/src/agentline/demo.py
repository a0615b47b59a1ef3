"""`make demo`: one session against `make dev`, as a frontend does it, with its timeline."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument(
        "--api-url", default=os.environ.get("DEMO_API_URL", "http://127.0.0.1:8080")
    )
    parser.add_argument("--api-key", default=os.environ.get("DEMO_API_KEY", DEV_API_KEY))
    parser.add_argument("--agent", default=None, help="agent_name to dispatch (default: the API's)")
    parser.add_argument("--timeout", type=float, default=40.0, help="seconds to wait for speech")
    args = parser.parse_args(argv)

    def on_event(kind: str, payload: dict[str, Any]) -> None:
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
