"""The garbage collector's full passes in a process holding thousands of station connections.

CPython's full collection walks every tracked object. At 3,000 OCPP stations `serve` holds about
600 k (connections, their tasks and buffers, the transaction book): one full pass took 0.46 s of
the event loop's CPU, during which no station is answered, and far longer on a busy machine
(``bench/ocpp_load.py --serve``). Full passes come each time the long-lived objects grow by a
quarter, so a fleet reconnecting after a restart meets several.

``HeapFreezer`` moves the survivors of each full collection to the permanent generation
(``gc.freeze``): they are long-lived by then, and later full passes walk only what is newer,
so their cost follows the rate of allocation, not the size of the fleet. Frozen objects are
still freed by reference counting; only reference cycles among them wait. To bound that, once
every ``unfreeze_every_s`` the freezer gives them back (``gc.unfreeze``), and the next full
pass walks the whole heap once and frees those cycles.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

__all__ = ["DEFAULT_UNFREEZE_EVERY_S", "HeapFreezer"]

# One full pass over the whole heap an hour at most: a pause of well under a second, against
# memory held by cycles among frozen objects (a disconnected station's leftovers) for at most
# an hour of the fleet's reconnections.
DEFAULT_UNFREEZE_EVERY_S = 3600.0


class HeapFreezer:
    """Freezes the survivors of full collections once ``install``-ed (see the module).

    Parameters
    ----------
    unfreeze_every_s
        How long frozen objects stay out of full passes at most.
    clock
        Monotonic seconds (a test passes its own).
    """

    def __init__(
        self,
        *,
        unfreeze_every_s: float = DEFAULT_UNFREEZE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.unfreeze_every_s = unfreeze_every_s
        self._clock = clock
        self._unfrozen_at = clock()
        self.freezes = 0  # full collections whose survivors were frozen
        self.unfreezes = 0

    def install(self) -> None:
        if self._after_collection not in gc.callbacks:
            gc.callbacks.append(self._after_collection)

    def remove(self) -> None:
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)

    def _after_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        now = self._clock()
        if now - self._unfrozen_at >= self.unfreeze_every_s:
            gc.unfreeze()  # the next full pass walks everything once
            self._unfrozen_at = now
            self.unfreezes += 1
        else:
            gc.freeze()
            self.freezes += 1
