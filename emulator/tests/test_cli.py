"""The ``livekit-emulator`` console script."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import socket
import subprocess
import sys

import aiohttp
import pytest
from livekit import api

from livekit_emulator.main import build_parser, parse_keys

SECRET = "cli-test-secret-0123456789abcdefghijkl"


def test_help_lists_the_options() -> None:
    exe = shutil.which("livekit-emulator") or sys.executable
    args = (
        [exe, "--help"] if exe != sys.executable else [exe, "-m", "livekit_emulator.main", "--help"]
    )
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    for flag in ("--port", "--keys", "--webhook-url", "--simulated-worker", "--real-timing"):
        assert flag in out


def test_arguments() -> None:
    args = build_parser().parse_args(
        [
            "--port",
            "7999",
            "--keys",
            "devkey:secret,k2:s2",
            "--webhook-url",
            "http://x/",
            "--simulated-worker",
            "travel-assistant:3",
            "--simulated-worker",
            "b",
            "--real-timing",
        ]
    )
    assert args.port == 7999 and args.keys == {"devkey": "secret", "k2": "s2"}
    assert [(w.agent_name, w.capacity) for w in args.simulated_workers] == [
        ("travel-assistant", 3),
        ("b", 10),
    ]
    assert args.real_timing and args.webhook_urls == ["http://x/"]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_keys("nosecret")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serves_until_terminated() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livekit_emulator.main",
        "--port",
        str(port),
        "--keys",
        f"devkey:{SECRET}",
        "--simulated-worker",
        "cli-agent:2",
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:

        async def up() -> bool:
            try:
                async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        async with asyncio.timeout(60):
            while True:
                if await up():
                    break
                await asyncio.sleep(0.2)
        lk = api.LiveKitAPI(f"http://127.0.0.1:{port}", "devkey", SECRET)
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room="cli", agent_name="cli-agent")
        )
        participants: list[api.ParticipantInfo] = []

        async def agent_joined() -> bool:
            participants[:] = (
                await lk.room.list_participants(api.ListParticipantsRequest(room="cli"))
            ).participants
            return bool(participants)

        async with asyncio.timeout(5):
            while True:
                if await agent_joined():
                    break
                await asyncio.sleep(0.05)
        assert participants[0].attributes["lk.agent_name"] == "cli-agent"
        await lk.aclose()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
