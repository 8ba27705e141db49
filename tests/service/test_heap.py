"""HeapFreezer: survivors of a full collection leave later full passes; once the unfreeze
interval is over they come back, and cycles among them are freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from service.heap import HeapFreezer


class Node:
    """A reference cycle's member, weakly referenceable to see when it is freed."""

    def __init__(self) -> None:
        self.other: Node | None = None


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def freezer() -> Iterator[tuple[HeapFreezer, Clock]]:
    clock = Clock()
    freezer = HeapFreezer(unfreeze_every_s=60.0, clock=clock)
    gc.collect()
    frozen_before = gc.get_freeze_count()
    freezer.install()
    yield freezer, clock
    freezer.remove()
    gc.unfreeze()  # what this test froze, and what was frozen before it (as at start-up)
    if frozen_before:
        gc.freeze()


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_survivors_of_a_full_pass_are_frozen_until_the_interval_is_over(
    freezer: tuple[HeapFreezer, Clock],
) -> None:
    heap, clock = freezer
    kept = cycle()
    held = kept()  # alive through the next full pass: a long-lived object
    gc.collect()
    assert heap.freezes == 1 and gc.get_freeze_count() > 0
    del held  # now garbage, but frozen: full passes no longer see it
    gc.collect()
    assert kept() is not None
    clock.now_s = 61.0  # the interval is over: the next full pass gives them back ...
    gc.collect()
    assert heap.unfreezes == 1 and gc.get_freeze_count() == 0
    gc.collect()  # ... and the one after frees the cycle
    assert kept() is None


def test_young_garbage_is_collected_as_before(freezer: tuple[HeapFreezer, Clock]) -> None:
    heap, _clock = freezer
    gc.collect()
    young = cycle()  # garbage at once, never frozen
    gc.collect()
    assert young() is None
    assert heap.unfreezes == 0
