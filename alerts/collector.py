"""The cyclic garbage collector held off during an alert cycle's bursts of allocation.

A cycle at 100,000 active alerts allocates a few hundred thousand small containers (sends,
records, decoded rows) while the alert state keeps hundreds of thousands alive. CPython's
collector then runs its full pass, over every live container, several times per cycle: at that
size a third of the cycle's CPU (bench/alerts.py). Nothing a cycle allocates forms reference
cycles that matter (its garbage is freed by reference counting), so the collector is paused
for the burst and runs once after, when its counts say so. The pause is process-wide (other
threads' cyclic garbage waits for it too) but bounded: the cycle's reading of its conditions and
its computing, a few seconds at most, never its sends to Alertmanager (which may wait tens of
seconds on a large cycle). It nests.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block (reference counting goes on); it is enabled
    again after, unless it was already off when the block began (a nested pause, or a caller
    that keeps it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
