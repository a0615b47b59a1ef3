"""Keep the emulator's WebRTC on the network it serves.

aiortc (through aioice) gathers host candidates on every interface of the machine and checks
every candidate a client offers. On a test machine that means media sent to the machine's
other addresses; this workplace allows traffic only to loopback and to the test's own network
namespaces. So the emulator gathers candidates, and accepts remote ones, only inside the /24
(IPv4) or /64 (IPv6) of the address it listens on. Listening on loopback (or on every
interface) leaves loopback alone — which libwebrtc ignores, so WebRTC then needs a namespace
(see docs/emulator.md, "WebRTC").
"""

from __future__ import annotations

import ipaddress
import weakref
from typing import Any

import aioice.ice

_original_host_addresses = aioice.ice.get_host_addresses
_original_add_remote = aioice.ice.Connection.add_remote_candidate
_emulators: weakref.WeakSet[Any] = weakref.WeakSet()
_installed = False

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks() -> list[Network]:
    out: list[Network] = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    for emu in list(_emulators):
        host = str(getattr(emu, "host", "") or "")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            continue
        if address.is_unspecified or address.is_loopback:
            continue
        prefix = 24 if address.version == 4 else 64
        out.append(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
    return out


def allowed(ip: str) -> bool:
    """Whether ``ip`` is on a network one of this process's emulators serves."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    return any(address in network for network in _networks())


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [a for a in _original_host_addresses(use_ipv4, use_ipv6) if allowed(a)]


async def _add_remote_candidate(self: Any, remote_candidate: Any) -> None:
    if remote_candidate is not None and not allowed(remote_candidate.host):
        return  # a client address outside the served network: never a check target
    await _original_add_remote(self, remote_candidate)


def serve(emulator: Any) -> None:
    """Scope ICE in this process to the networks its emulators listen on."""
    global _installed
    _emulators.add(emulator)
    if not _installed:
        aioice.ice.get_host_addresses = _host_addresses
        aioice.ice.Connection.add_remote_candidate = _add_remote_candidate  # type: ignore[method-assign]
        _installed = True
