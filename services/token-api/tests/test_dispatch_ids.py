"""token_api.dispatch_ids writes the ids agentline.ids writes."""

from __future__ import annotations

import os
import re
import time

from agentline import ids
from token_api.dispatch_ids import dispatch_id_of, new_dispatch_id


def test_same_encoding_as_the_shared_library() -> None:
    samples = [
        (0, bytes(10)),
        (2**48 - 1, b"\xff" * 10),
        (time.time_ns() // 1_000_000, b"\x01" * 10),
    ]
    samples += [(int.from_bytes(os.urandom(6), "big"), os.urandom(10)) for _ in range(2000)]
    for millis, random_part in samples:
        expected = (
            "dsp_" + ids._base32(millis, 10) + ids._base32(int.from_bytes(random_part, "big"), 16)
        )
        assert dispatch_id_of(millis, random_part) == expected


def test_new_ids_look_like_the_shared_ones_and_sort_by_time() -> None:
    ours, shared = new_dispatch_id(), ids.new_dispatch_id()
    assert len(ours) == len(shared) and ours[:4] == shared[:4] == "dsp_"
    assert re.fullmatch(r"dsp_[0-9a-hjkmnp-tv-z]{26}", ours)
    assert ours[4:14] <= shared[4:14]  # the same clock, read first
    assert len({new_dispatch_id() for _ in range(1000)}) == 1000
