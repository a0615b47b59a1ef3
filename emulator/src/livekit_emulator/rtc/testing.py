"""Helpers and pytest fixtures for WebRTC scenarios inside a network namespace.

Use them from a ``conftest.py`` with ``pytest_plugins = ["livekit_emulator.rtc.testing"]``:

* ``netns``: a fresh namespace (veth pair, 10.203.n.1 / 10.203.n.2) that the test's thread has
  *entered* for the whole test, so everything the test starts (an in-process emulator, aiortc
  sockets, webhook receivers, ``EmbeddedRedis``, subprocesses) lives inside it. The test is
  skipped, with the reason, when not root or without ``ip``. Redis at 127.0.0.1:6379 of the
  host is *not* reachable from inside: start ``agentline.redis_conn.EmbeddedRedis`` in the
  test (it spawns valkey from a worker thread created inside the namespace).
* ``rtc_emulator``: ``running_emulator(host=netns.server_ip)``.
* ``spawn_probe(ns, url, token, ...)``: a real SDK participant (``livekit_emulator.rtc.probe``)
  in its own process, whose JSON-line events the test awaits with ``probe.wait_for``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from livekit import api

from ..netns import NetNamespace, skip_reason
from ..testing import RunningEmulator, running_emulator


def participant_token(
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    *,
    name: str = "",
    kind: str = "",
    can_publish: bool = True,
    can_subscribe: bool = True,
    can_update_metadata: bool = False,
    hidden: bool = False,
    ttl_s: int = 600,
) -> str:
    """A join token as a backend would mint it for a frontend."""
    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_grants(
            api.VideoGrants(
                room_join=True,
                room=room,
                can_publish=can_publish,
                can_subscribe=can_subscribe,
                can_update_own_metadata=can_update_metadata,
                hidden=hidden,
            )
        )
        .with_ttl(datetime.timedelta(seconds=ttl_s))
    )
    if name:
        token = token.with_name(name)
    if kind:
        token = token.with_kind(kind)  # type: ignore[arg-type]
    return token.to_jwt()


@dataclass
class Probe:
    """A running ``livekit_emulator.rtc.probe`` process and the events it printed."""

    name: str
    process: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start_reading(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            try:
                self.events.append(json.loads(raw))
            except json.JSONDecodeError:
                self.stderr.append(raw.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.stderr.append(raw.decode(errors="replace").rstrip())

    def find(self, event: str, **match: Any) -> dict[str, Any] | None:
        for e in self.events:
            if e["event"] == event and all(e.get(k) == v for k, v in match.items()):
                return e
        return None

    async def wait_for(
        self,
        event: str,
        within: float = 15.0,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        **match: Any,
    ) -> dict[str, Any]:
        """The first ``event`` whose fields equal ``match`` (and satisfy ``predicate``)."""
        try:
            async with asyncio.timeout(within):
                while True:
                    for e in self.events:
                        if (
                            e["event"] == event
                            and all(e.get(k) == v for k, v in match.items())
                            and (predicate is None or predicate(e))
                        ):
                            return e
                    if err := self.find("error"):
                        raise AssertionError(f"{self.name} failed: {err}")
                    if self.process.returncode is not None and not self._changed.is_set():
                        raise AssertionError(f"{self.name} exited before {event}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            tail = "\n".join(self.stderr[-15:])
            raise AssertionError(
                f"{self.name}: no {event} {match} within {within}s; events {self.events}; "
                f"stderr:\n{tail}"
            ) from None

    async def leave(self, within: float = 10.0) -> int:
        """Ask the probe to leave (closes its stdin) and wait for it to exit."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            async with asyncio.timeout(within):
                code = await self.process.wait()
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await task
        return code


async def spawn_probe(
    ns: NetNamespace,
    url: str,
    token: str,
    *,
    name: str = "probe",
    tone_hz: float = 0.0,
    max_duration_s: float = 30.0,
    auto_subscribe: bool = True,
    extra_args: tuple[str, ...] = (),
) -> Probe:
    """Start an SDK participant inside ``ns``; it stays until ``probe.leave()``."""
    argv = [
        sys.executable,
        "-m",
        "livekit_emulator.rtc.probe",
        "--url",
        url,
        "--token",
        token,
        "--duration",
        str(max_duration_s),
        "--stdin-control",
    ]
    if tone_hz:
        argv += ["--tone", str(tone_hz)]
    if not auto_subscribe:
        argv.append("--no-auto-subscribe")
    argv += extra_args
    process = await ns.spawn(argv, stdin=asyncio.subprocess.PIPE)
    probe = Probe(name, process)
    probe.start_reading()
    return probe


@pytest.fixture
def netns() -> Iterator[NetNamespace]:
    """A network namespace the test's thread runs in for the whole test (see module doc)."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    ns = NetNamespace.create()
    try:
        with ns.entered():
            yield ns
    finally:
        ns.delete()


@pytest_asyncio.fixture
async def rtc_emulator(netns: NetNamespace) -> AsyncIterator[RunningEmulator]:
    """An emulator listening on the namespace's server address."""
    async with running_emulator(host=netns.server_ip) as emu:
        yield emu
