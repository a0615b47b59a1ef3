"""`agentline`: operator commands that need only Redis and the settings."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import msgspec

from agentline.keys import Keys
from agentline.redis_conn import make_client
from agentline.registry import WorkerRegistry
from agentline.settings import CommonSettings, load_settings
from agentline.store import DispatchStore


async def _show_dispatch(settings: CommonSettings, dispatch_id: str) -> int:
    redis = make_client(settings.redis_url)
    try:
        store = DispatchStore(redis, Keys(settings.redis_namespace))
        record = await store.get(dispatch_id)
        if record is None:
            print(f"no dispatch {dispatch_id}", file=sys.stderr)
            return 1
        events = await store.events(dispatch_id, count=1000)
        out = {
            "record": msgspec.to_builtins(record),
            "durations_ms": record.durations_ms(),
            "events": [msgspec.to_builtins(e) for e in events],
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    finally:
        await redis.aclose()


async def _show_workers(settings: CommonSettings) -> int:
    redis = make_client(settings.redis_url)
    try:
        registry = WorkerRegistry(redis, Keys(settings.redis_namespace))
        workers = await registry.live_workers()
        print(json.dumps([msgspec.to_builtins(w) for w in workers], indent=2))
        return 0
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("dispatch", help="print a dispatch's record, timings and events")
    show.add_argument("dispatch_id")
    commands.add_parser("workers", help="print the live workers from the registry")
    commands.add_parser("settings", help="print the configuration table (Markdown)")
    args = parser.parse_args(argv)
    if args.command == "settings":
        from agentline.settings_doc import table

        print(table())
        return 0
    settings = load_settings(CommonSettings)
    if args.command == "dispatch":
        return asyncio.run(_show_dispatch(settings, args.dispatch_id))
    return asyncio.run(_show_workers(settings))


if __name__ == "__main__":
    raise SystemExit(main())
