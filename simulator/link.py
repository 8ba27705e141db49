"""Lost connections: a station that keeps its meter values while offline and uploads them later.

OCPP stations queue transaction-related messages while their link is down and send them once
it is back. When the link drops during a session and returns only after the session stopped,
the readings of that stretch reach the central system after the session's stop, with the times
they were taken. Nothing is wrong with the charge or the data: it must be judged as if it had
come in time. Only the time the lines are sent (their place in the file) changes, never what
they say, so a fleet with late uploads carries the same labels as one without.
"""

from __future__ import annotations

import numpy as np

from .inject import Readings

# Share of a station's sessions whose link drops before the stop and returns after it: mobile
# links of street chargers drop a few times a week; a drop spanning a session's end is rarer.
LATE_UPLOAD_P = 0.03
# The link comes back 1 min to 3 h after the stop (a modem reset, a cell outage).
_BACK_S = (60.0, 3 * 3600.0)
_MIN_HELD = 2  # readings held back, at least (fewer is no outage worth the name)
_MAX_HELD_S = 3 * 3600.0  # the link went down at most this long before the stop
_BURST_MS = 40  # a queued message every 40 ms once the link is back


def upload_late(r: Readings, stop_ms: int, end_ms: int, rng: np.random.Generator) -> int:
    """Maybe hold back the readings of a stretch before the stop, Transaction.End's included,
    and send them after it, in the order they were taken; how many were held. (The stop itself
    got through: a station sends its StopTransaction first once back, or over another link.)"""
    n = r.sent_ms.size
    if n < _MIN_HELD + 2 or rng.random() >= LATE_UPLOAD_P:
        return 0
    back_ms = stop_ms + round(rng.uniform(*_BACK_S) * 1000.0)
    down_ms = stop_ms - round(rng.uniform(0.05, 1.0) * _MAX_HELD_S * 1000.0)
    held = np.flatnonzero((r.sent_ms >= down_ms) & (r.sent_ms <= stop_ms))
    held = held[held > 0]  # Transaction.Begin went out with the start
    if held.size < _MIN_HELD or back_ms + _BURST_MS * held.size >= end_ms:
        return 0
    r.sent_ms[held] = back_ms + _BURST_MS * np.arange(held.size)
    return int(held.size)
