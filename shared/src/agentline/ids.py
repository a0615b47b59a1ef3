"""Identifiers: sortable, URL-safe, prefixed by kind."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class _RandomPool:
    """Bytes from the OS's CSPRNG, read a block at a time: one ``getrandom`` call serves
    hundreds of ids (a system call per id is a visible share of the session path on VMs).
    A forked child starts with an empty pool, so no two processes hand out the same bytes."""

    BLOCK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._position = 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._position + count > len(self._block):
                self._block = os.urandom(max(self.BLOCK, count))
                self._position = 0
            start = self._position
            self._position += count
            return self._block[start : start + count]

    def reset(self) -> None:
        self._block, self._position = b"", 0


_pool = _RandomPool()
os.register_at_fork(after_in_child=_pool.reset)


def random_bytes(count: int) -> bytes:
    """``count`` unpredictable bytes (as ``os.urandom``, from a pooled block)."""
    return _pool.take(count)


def random_hex(count: int) -> str:
    """``count`` random bytes as hex (as ``secrets.token_hex``)."""
    return _pool.take(count).hex()


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 48-bit millisecond time + 80 random bits (ULID layout, base32)."""
    millis = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(random_bytes(10), "big")
    return f"{prefix}_{_base32(millis, 10)}{_base32(random_bits, 16)}"


def new_dispatch_id() -> str:
    return new_id("dsp")


def now_ms() -> int:
    return time.time_ns() // 1_000_000
