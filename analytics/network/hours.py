"""Quarter hours of UTC in the local time of a zone: the hour of week each falls in, and the
local hour it belongs to.

Each quarter hour's UTC offset is the zone's at its start (``zoneinfo``: one lookup per quarter
hour, 672 for a week). Every offset in use is a whole number of quarter hours and changes only
on a quarter hour, so a quarter hour lies within one local hour: the one starting at
``start - (local time mod 1 h)``. Across a change of offset a local hour may come twice (the
autumn's 02:00) or not at all (the spring's): each instance is counted where it falls, and the
hour of week's exposure says how often it came.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from analytics.batch import IntArray
from analytics.usage import PIECE_NS

__all__ = ["LocalQuarters", "local_quarters"]

_NS = 1_000_000_000
_HOUR_S = 3600
_DAY_S = 24 * _HOUR_S
_THURSDAY = 3  # 1970-01-01, with Monday 0


class LocalQuarters:
    """The quarter hours of ``[since_ns, until_ns)`` (both on quarter hours) in ``zone``."""

    def __init__(self, since_ns: int, until_ns: int, zone: ZoneInfo) -> None:
        self.starts_ns: IntArray = np.arange(since_ns, until_ns, PIECE_NS, dtype=np.int64)
        self.offsets_s: IntArray = _offsets_s(self.starts_ns, zone)
        local_s = self.starts_ns // _NS + self.offsets_s
        weekday = (local_s // _DAY_S + _THURSDAY) % 7
        self.hour_of_week: IntArray = weekday * 24 + (local_s % _DAY_S) // _HOUR_S
        self.hour_start_ns: IntArray = self.starts_ns - (local_s % _HOUR_S) * _NS

    def __len__(self) -> int:
        return int(self.starts_ns.shape[0])

    def index_of(self, times_ns: IntArray) -> IntArray:
        """The quarter hour each time falls in (times within the window)."""
        return np.asarray((times_ns - self.starts_ns[0]) // PIECE_NS, dtype=np.int64)


def local_quarters(since_ns: int, until_ns: int, zone: ZoneInfo) -> LocalQuarters:
    return LocalQuarters(since_ns, until_ns, zone)


def _offsets_s(starts_ns: IntArray, zone: ZoneInfo) -> IntArray:
    if zone.key == "UTC" or not starts_ns.size:
        return np.zeros(starts_ns.shape, dtype=np.int64)
    offsets = [
        int(offset.total_seconds()) if (offset := moment.astimezone(zone).utcoffset()) else 0
        for moment in (datetime.fromtimestamp(int(s) // _NS, UTC) for s in starts_ns)
    ]
    return np.asarray(offsets, dtype=np.int64)
