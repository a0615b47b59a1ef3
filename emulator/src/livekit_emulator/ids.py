"""Identifiers in LiveKit's format: a prefix and base62 characters (``RM_``, ``AD_``, ``AJ_``...)."""

from __future__ import annotations

import random
import string

_ALPHABET = string.ascii_letters + string.digits
# Fast and unpredictable enough for ids (not for secrets: turn passwords are not secrets here).
_rng = random.Random()

ROOM = "RM_"
PARTICIPANT = "PA_"
TRACK = "TR_"
DISPATCH = "AD_"
JOB = "AJ_"
WORKER = "AW_"
EVENT = "EV_"
NODE = "ND_"


def random_string(length: int) -> str:
    return "".join(_rng.choices(_ALPHABET, k=length))


def guid(prefix: str, length: int = 12) -> str:
    """A LiveKit-style id: ``prefix`` followed by ``length`` base62 characters."""
    return prefix + random_string(length)


def track_sid() -> str:
    # LiveKit's track ids carry a two-letter type tag after the prefix (AM: audio, microphone).
    return TRACK + "AM" + random_string(12)
