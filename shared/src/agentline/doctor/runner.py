"""Runs every check in order, stopping nowhere, and renders them as text or JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from agentline.doctor.checks import (
    NO_WEBHOOK_YET,
    Check,
    check_redis,
    check_settings,
    check_webhooks,
    check_workers,
)
from agentline.doctor.livekit_checks import check_livekit
from agentline.keys import Keys
from agentline.redis_conn import make_client
from agentline.settings import DEV_API_KEY, CommonSettings, TokenApiSettings

# How long the webhooks of the probe's session may take to reach the dispatcher.
WEBHOOK_WAIT_AFTER_PROBE_S = 5.0


@dataclass
class DoctorOptions:
    agent_names: list[str]
    probe: bool = True
    api_url: str = "http://127.0.0.1:8080"
    api_key: str = DEV_API_KEY
    timeout_s: float = 30.0


async def run_doctor(
    settings: CommonSettings,
    options: DoctorOptions,
    progress: Callable[[str], None] | None = None,
    redis: Redis | None = None,
) -> list[Check]:
    """Every check in order, stopping nowhere; ``redis``: a client to use (else one is made)."""
    checks = check_settings()
    own_client = redis is None
    if redis is None:
        redis = make_client(settings.redis_url, max_connections=4, socket_timeout=3.0)
    keys = Keys(settings.redis_namespace)
    try:
        redis_checks = await check_redis(redis, keys, settings.redis_url)
        checks += redis_checks
        livekit_checks = await check_livekit(settings)
        checks += livekit_checks
        webhooks_at = -1
        if redis_checks[0].ok:
            checks += await check_workers(redis, keys, options.agent_names)
            webhooks_at = len(checks)
            checks += await check_webhooks(redis, keys)
        else:
            checks.append(Check("workers", "worker registry", False, "Redis unreachable"))
        livekit_up = bool(livekit_checks) and livekit_checks[0].ok
        if options.probe and livekit_up:
            probe = await _probe(options, progress)
            if webhooks_at >= 0 and checks[webhooks_at].evidence == NO_WEBHOOK_YET:
                # A new system: the probe's session is the first LiveKit had to report on
                # (its webhooks may still be on their way when a failed probe returns).
                checks[webhooks_at : webhooks_at + 1] = _after_probe(
                    await _webhooks_after_probe(redis, keys)
                )
            checks.append(probe)
    finally:
        if own_client:
            await redis.aclose()
    return checks


async def _webhooks_after_probe(redis: Redis, keys: Keys) -> list[Check]:
    deadline = time.monotonic() + WEBHOOK_WAIT_AFTER_PROBE_S
    while True:
        checks = await check_webhooks(redis, keys)
        if checks[0].evidence != NO_WEBHOOK_YET or time.monotonic() >= deadline:
            return checks
        await asyncio.sleep(0.2)


def _after_probe(checks: list[Check]) -> list[Check]:
    for check in checks:
        if check.evidence == NO_WEBHOOK_YET:
            check.evidence += ", not even for the live probe's session"
        else:
            check.evidence += " (the first ones came with the live probe's session)"
    return checks


async def _probe(options: DoctorOptions, progress: Callable[[str], None] | None) -> Check:
    from agentline.probe import run_probe

    def on_event(kind: str, payload: dict[str, Any]) -> None:
        if progress and kind == "state":
            progress(f"probe: {payload['state']} at {payload['at_ms']} ms")

    agent = options.agent_names[0] if options.agent_names else None
    result = await run_probe(
        options.api_url, options.api_key, agent_name=agent, timeout_s=options.timeout_s,
        on_event=on_event,
    )  # fmt: skip
    stages = " → ".join(f"{stage} {at} ms" for stage, at, _ in result.timeline())
    data = {"dispatch_id": result.dispatch_id, "stages_ms": result.stage_at_ms}
    if result.ok:
        evidence = f"{stages}; {result.audible_frames} audible agent frames"
        return Check("probe", "live session reaches speaking", True, evidence, data=data)
    if result.reason:
        evidence = f"{stages}; failed: {result.reason}: {result.message}"
        if result.detail:
            evidence += " (" + "; ".join(f"{k}={v}" for k, v in result.detail.items()) + ")"
        return Check("probe", "live session reaches speaking", False, evidence, result.hint, data)
    return Check(
        "probe",
        "live session reaches speaking",
        False,
        f"{stages or 'no stage reached'}; {result.error}",
        "see the dispatch with `agentline dispatch " + (result.dispatch_id or "<id>") + "`",
        data,
    )


def render_text(checks: list[Check], colour: bool) -> str:
    green, red, dim, reset = ("\033[32m", "\033[31m", "\033[2m", "\033[0m") if colour else ("",) * 4
    lines: list[str] = []
    section = ""
    for check in checks:
        if check.section != section:
            section = check.section
            lines.append(f"\n{section}")
        mark = f"{green}✓{reset}" if check.ok else f"{red}✗{reset}"
        lines.append(f"  {mark} {check.name}: {check.evidence}")
        if not check.ok and check.fix:
            lines.append(f"      {dim}fix:{reset} {check.fix}")
    failed = sum(not c.ok for c in checks)
    lines.append(f"\n{len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines)


def report(checks: list[Check]) -> dict[str, Any]:
    """The machine-readable result: ``ok`` only when every check passed."""
    return {"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}


def render_json(checks: list[Check]) -> str:
    return json.dumps(report(checks), indent=2)


def default_agent_names(extra: list[str]) -> list[str]:
    """The API's default agent_name plus any named with --agent."""
    try:
        default = TokenApiSettings().default_agent_name
    except ValueError:
        default = ""
    names = [n for n in [default, *extra] if n]
    return list(dict.fromkeys(names))


def print_progress(line: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{line}")
        sys.stderr.flush()
