"""Python's cyclic garbage collector held off while a network is built, analysed or drawn.

Building and analysing a graph allocates tens of thousands of small objects (fx nodes, metadata dicts,
tuples), so the collector runs hundreds of times, and each full collection walks every object the process
holds — torch's own modules included. On ContinuousNet 32-32-32 that was a third of `analyze`'s time.
The objects are referenced (not garbage) until the call returns, so nothing is lost by collecting after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block (or decorated function) with the cyclic collector off; its previous state is restored after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
