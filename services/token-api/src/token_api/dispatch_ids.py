"""Dispatch ids for the request path: ``agentline.ids.new_dispatch_id``'s layout and alphabet
(``dsp_`` + 48-bit millisecond time in 10 Crockford base32 characters + 80 random bits in 16),
encoded two characters per step from a 1,024-entry table instead of one character per Python
loop turn: ~2 µs less per session. The tests hold both encodings equal.
"""

from __future__ import annotations

import time

from agentline.ids import random_bytes

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # agentline.ids's Crockford base32, lower case
_PAIRS = tuple(_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024))
# 26 characters = 130 bits: the time in bits 80-129, the random part in bits 0-79.
_SHIFTS = tuple(range(120, -1, -10))


def dispatch_id_of(millis: int, random_part: bytes) -> str:
    value = (millis << 80) | int.from_bytes(random_part, "big")
    return "dsp_" + "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_dispatch_id() -> str:
    return dispatch_id_of(time.time_ns() // 1_000_000, random_bytes(10))
