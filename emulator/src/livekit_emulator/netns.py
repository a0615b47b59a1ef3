"""Network namespaces for WebRTC tests: libwebrtc ignores loopback when it gathers ICE
candidates, so on a machine whose only interface is ``lo`` a real SDK cannot connect. A test
creates its own namespace with a veth pair (both ends inside it, private addresses) and runs
the whole scenario there: the emulator, an embedded Redis, SDK clients and workers.

Two ways to put something inside:

* ``NetNamespace.entered()``: moves the *calling thread* into the namespace (``setns``), so
  sockets it creates afterwards (an in-process emulator, aiortc's UDP ports, a webhook
  receiver, subprocesses it starts, threads it creates) live there. Sockets keep their
  namespace when the thread leaves. Threads created earlier (an already started thread
  pool) stay where they were.
* ``NetNamespace.spawn(...)``: an asyncio subprocess started inside it (``nsenter --net``, or
  ``ip netns exec`` where util-linux's nsenter is missing).

Root is needed (``ip netns add``); ``skip_reason()`` tells a test why it cannot run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/var/run/netns")
# 10.203.<n>.0/24 per namespace; n cycles so that parallel namespaces of one run differ.
_SUBNET_BASE = "10.203"
_counter = itertools.count((os.getpid() % 200) + 1)


def skip_reason() -> str | None:
    """Why network-namespace tests cannot run here, or ``None`` when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root); see docs/emulator.md 'WebRTC'"
    if shutil.which("ip") is None:
        return "the iproute2 'ip' command is not installed"
    return None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns failed: {os.strerror(err)}")


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")


def remove_stale(prefix: str = "lkemu") -> list[str]:
    """Delete this module's namespaces left behind by processes that died (``PREFIX-PID-N``
    whose PID is gone); namespaces of live processes are left alone."""
    removed = []
    names = [p.name for p in NETNS_DIR.iterdir()] if NETNS_DIR.is_dir() else []
    for name in names:
        parts = name.split("-")
        if len(parts) != 3 or parts[0] != prefix or not parts[1].isdigit():
            continue
        if Path(f"/proc/{parts[1]}").exists():
            continue
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
        removed.append(name)
    return removed


@dataclass
class NetNamespace:
    """A namespace ``name`` with ``lo`` up and a veth pair ``server_ip`` <-> ``client_ip``."""

    name: str
    subnet: int
    created: bool = field(default=False, init=False)

    @property
    def server_ip(self) -> str:
        """The address servers (the emulator) listen on inside the namespace."""
        return f"{_SUBNET_BASE}.{self.subnet}.1"

    @property
    def client_ip(self) -> str:
        return f"{_SUBNET_BASE}.{self.subnet}.2"

    @classmethod
    def create(cls, prefix: str = "lkemu") -> NetNamespace:
        remove_stale(prefix)
        n = next(_counter) % 250 + 1
        ns = cls(name=f"{prefix}-{os.getpid()}-{n}", subnet=n)
        ns.setup()
        return ns

    def setup(self) -> None:
        _run("ip", "netns", "add", self.name)
        self.created = True
        try:
            a, b = (
                f"va{self.subnet}p{os.getpid() % 10000}",
                f"vb{self.subnet}p{os.getpid() % 10000}",
            )
            inside = ("ip", "-n", self.name)
            _run(*inside, "link", "set", "lo", "up")
            # Both ends live inside the namespace: nothing is added to the host's network.
            _run(*inside, "link", "add", a, "type", "veth", "peer", "name", b)
            _run(*inside, "addr", "add", f"{self.server_ip}/24", "dev", a)
            _run(*inside, "addr", "add", f"{self.client_ip}/24", "dev", b)
            _run(*inside, "link", "set", a, "up")
            _run(*inside, "link", "set", b, "up")
        except Exception:
            self.delete()
            raise

    def delete(self) -> None:
        if self.created:
            # Deleting the namespace removes its veth pair with it.
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)
            self.created = False

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the calling thread inside the namespace until the block ends."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(NETNS_DIR / self.name, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside the namespace. nsenter enters the network
        namespace only; ``ip netns exec`` also gives the process mounts of its own with a new
        /sys, which hides the cgroup hierarchy (``agentline.cpu_share`` puts stand-ins there)."""
        if shutil.which("nsenter"):
            return ["nsenter", f"--net={NETNS_DIR / self.name}", "--", *argv]
        return ["ip", "netns", "exec", self.name, *argv]

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stdin: int | None = asyncio.subprocess.DEVNULL,
        stdout: int | None = asyncio.subprocess.PIPE,
        stderr: int | None = asyncio.subprocess.PIPE,
        start_new_session: bool = False,
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` inside the namespace (stdin closed unless asked for)."""
        return await asyncio.create_subprocess_exec(
            *self.command(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=env,
            start_new_session=start_new_session,
        )


@contextlib.contextmanager
def namespace(prefix: str = "lkemu") -> Iterator[NetNamespace]:
    """A fresh namespace for the block, deleted afterwards."""
    ns = NetNamespace.create(prefix)
    try:
        yield ns
    finally:
        ns.delete()
