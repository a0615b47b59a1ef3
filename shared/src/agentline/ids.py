"""Identifiers: sortable, URL-safe, prefixed by kind."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 48-bit millisecond time + 80 random bits (ULID layout, base32)."""
    millis = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_base32(millis, 10)}{_base32(random_bits, 16)}"


def new_dispatch_id() -> str:
    return new_id("dsp")


def now_ms() -> int:
    return time.time_ns() // 1_000_000
