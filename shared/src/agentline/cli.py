"""`agentline`: operator commands that need only Redis and the settings."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import msgspec
from pydantic import ValidationError

from agentline.keys import Keys
from agentline.redis_conn import make_client
from agentline.registry import WorkerRegistry
from agentline.settings import DEV_API_KEY, CommonSettings, load_settings
from agentline.store import DispatchStore

DEFAULT_API = "http://127.0.0.1:8080"


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


def _doctor(args: argparse.Namespace) -> int:
    from agentline.doctor import DoctorOptions, run_doctor
    from agentline.doctor.runner import (
        default_agent_names,
        print_progress,
        render_json,
        render_text,
    )

    try:
        settings = CommonSettings()
    except ValidationError:
        settings = CommonSettings.model_construct()  # the settings check names the problem
    api_key = args.api_key
    if api_key is None:
        keys_env = os.environ.get("TOKEN_API_API_KEYS", DEV_API_KEY)
        api_key = keys_env.split(",")[0].strip()
    options = DoctorOptions(
        agent_names=default_agent_names(args.agent),
        probe=not args.no_probe,
        api_url=args.api_url,
        api_key=api_key,
        timeout_s=args.timeout,
    )
    checks = asyncio.run(run_doctor(settings, options, None if args.json else print_progress))
    if args.json:
        print(render_json(checks))
    else:
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K")
        print(render_text(checks, colour=sys.stdout.isatty()))
    return 0 if all(c.ok for c in checks) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("dispatch", help="print a dispatch's record, timings and events")
    show.add_argument("dispatch_id")
    commands.add_parser("workers", help="print the live workers from the registry")
    commands.add_parser("settings", help="print the configuration table (Markdown)")
    doctor = commands.add_parser("doctor", help="check every cause of 'the agent never joins'")
    doctor.add_argument("--agent", action="append", default=[], help="agent_name to check")
    doctor.add_argument("--no-probe", action="store_true", help="skip the live session probe")
    doctor.add_argument("--json", action="store_true", help="JSON output (for CI, monitoring)")
    doctor.add_argument("--timeout", type=float, default=30.0, help="probe timeout, seconds")
    doctor.add_argument("--api-url", default=os.environ.get("AGENTLINE_API_URL", DEFAULT_API))
    doctor.add_argument(
        "--api-key", default=None, help="token-api key (default: the first of TOKEN_API_API_KEYS)"
    )
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return _doctor(args)
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
