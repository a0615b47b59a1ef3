"""The start-up heap and the cyclic garbage collector.

Everything a service builds at start-up (imported modules, clients, settings) lives as long as
the process, yet every full collection walks all of it: ~90,000 objects in the dispatcher,
~40 ms on this kind of machine, a pause that lands on whatever requests wait at that moment
(it showed as the p99 of queue waits). Freezing them moves them out of the collector's reach;
later garbage is collected as usual.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Call once, when start-up is done: collect what start-up left behind (so that it is
    not kept for ever), then freeze everything still alive."""
    gc.collect()
    gc.freeze()
