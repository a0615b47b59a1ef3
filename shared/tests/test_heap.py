"""The start-up heap is frozen out of the collector's full passes."""

from __future__ import annotations

import gc

from agentline.heap import freeze_startup_objects


def test_startup_objects_leave_the_collectors_reach() -> None:
    try:
        freeze_startup_objects()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # this process's modules and objects
        assert all(gc.get_count()[generation] < 700 for generation in range(3))
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
