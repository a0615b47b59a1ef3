"""The network-namespace helper: what runs inside sees the veth pair and nothing of the host."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import ifaddr
import pytest

from livekit_emulator import netns as netns_mod
from livekit_emulator.netns import NetNamespace, namespace, skip_reason

pytestmark = pytest.mark.netns


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if (reason := skip_reason()) is not None:
        pytest.skip(reason)


def _interfaces() -> dict[str, str]:
    return {a.nice_name: str(ip.ip) for a in ifaddr.get_adapters() for ip in a.ips if ip.is_IPv4}


async def test_entered_thread_and_spawned_processes_live_inside() -> None:
    host_interfaces = _interfaces()
    with namespace() as ns:
        assert ns.name in _namespaces()
        with ns.entered():
            inside = _interfaces()
            listener = socket.create_server((ns.server_ip, 0))
        assert sorted(inside.values()) == sorted(["127.0.0.1", ns.server_ip, ns.client_ip])
        assert _interfaces() == host_interfaces  # the thread is back on the host
        port = listener.getsockname()[1]
        code = (
            f"import socket; socket.create_connection(('{ns.server_ip}', {port}), 2); print('in')"
        )
        proc = await ns.spawn([sys.executable, "-c", code])
        out, err = await proc.communicate()
        listener.close()
        assert (proc.returncode, out) == (0, b"in\n"), err
    assert ns.name not in _namespaces()


async def test_spawned_processes_enter_the_network_namespace_only() -> None:
    """They keep the host's mounts, so they see its cgroups (agentline.cpu_share puts the
    one-box stand-ins there); ``ip netns exec`` would give them a /sys of their own."""
    if shutil.which("nsenter") is None:
        pytest.skip("util-linux nsenter is not installed: ip netns exec is used instead")
    code = "import os; print(os.readlink('/proc/self/ns/mnt'), os.readlink('/proc/self/ns/net'))"
    with namespace() as ns:
        proc = await ns.spawn([sys.executable, "-c", code])
        out, err = await proc.communicate()
    assert proc.returncode == 0, err
    mounts, network = out.decode().split()
    assert mounts == os.readlink("/proc/self/ns/mnt")
    assert network != os.readlink("/proc/self/ns/net")


def test_stale_namespaces_of_dead_processes_are_removed() -> None:
    dead_pid = 9_999_999  # above PID_MAX_LIMIT (4194304): never a live process
    stale = f"lkemu-{dead_pid}-7"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with namespace() as live:
            assert stale not in _namespaces()
            assert live.name in _namespaces()
            assert live.name not in netns_mod.remove_stale()  # ours is alive: kept
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True)


def test_two_namespaces_get_different_subnets() -> None:
    a, b = NetNamespace.create(), NetNamespace.create()
    try:
        assert a.name != b.name and a.server_ip != b.server_ip
    finally:
        a.delete()
        b.delete()
