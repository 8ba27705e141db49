"""Counting over many sessions at once: outcomes, distributions, concurrency, returning users.

Pure functions of arrays (no I/O, no clock), each vectorized over sessions.
"""

from __future__ import annotations

import numpy as np

from analytics.batch import BoolArray, FloatArray, IntArray, ObjectArray
from analytics.network.sessions import SessionTable
from analytics.network.stations import StatusEvents
from chargewatch.figures import METER_KINDS, SUCCESS_MIN_WH, Histogram, Outcomes
from chargewatch.kinds import AnomalyKind

__all__ = [
    "DURATION_EDGES_MIN",
    "ENERGY_EDGES_KWH",
    "SessionOutcomes",
    "count_in_spans",
    "histogram",
    "peak_concurrency",
    "returning_users",
    "session_outcomes",
]

# Bins of the distributions, fixed so that dashboards and reports compare across windows: finer
# where most sessions are (short AC top-ups, DC sessions under an hour), coarser in the tail; the
# last bin is open-ended.
DURATION_EDGES_MIN: tuple[float, ...] = (0, 15, 30, 45, 60, 90, 120, 180, 240, 360, 480, 720, 1440)
ENERGY_EDGES_KWH: tuple[float, ...] = (0, 2, 5, 10, 15, 20, 30, 40, 60, 80, 100)
_STALL = frozenset({AnomalyKind.STALL.value})


def histogram(values: FloatArray, edges: tuple[float, ...], unit: str) -> Histogram:
    """Counts of the finite ``values`` per bin ``[edges[i], edges[i+1])``, the last bin open;
    values below the first edge count in the first bin."""
    finite = values[np.isfinite(values)]
    bins = np.clip(np.searchsorted(np.asarray(edges), finite, side="right") - 1, 0, len(edges) - 1)
    counts = np.bincount(bins, minlength=len(edges))
    return Histogram(unit=unit, edges=edges, counts=tuple(int(c) for c in counts))


def peak_concurrency(
    start_ns: IntArray, end_ns: IntArray, since_ns: int, until_ns: int
) -> tuple[int, int | None]:
    """The most sessions open at once within ``[since_ns, until_ns)`` and the first moment it
    happened (None when no session was open). A session that ends as another starts is not
    concurrent with it."""
    lo = np.maximum(start_ns, since_ns)
    hi = np.minimum(end_ns, until_ns)
    keep = hi > lo
    if not keep.any():
        return 0, None
    times = np.concatenate([lo[keep], hi[keep]])
    step = np.concatenate([np.ones(int(keep.sum()), np.int64), -np.ones(int(keep.sum()), np.int64)])
    order = np.lexsort((step, times))  # at one instant, ends before starts
    level = np.cumsum(step[order])
    peak = int(np.argmax(level))
    return int(level[peak]), int(times[order][peak])


def returning_users(pseudonyms: ObjectArray, earlier: ObjectArray) -> tuple[int, int]:
    """(users, returning users) among the window's sessions' ``pseudonyms``: a user returns
    when they have two sessions in the window, or one in ``earlier`` (pseudonyms seen before)."""
    known = pseudonyms[np.array([p is not None for p in pseudonyms], dtype=bool)]
    if not known.size:
        return 0, 0
    users, counts = np.unique(known.astype(str), return_counts=True)
    seen = np.isin(users, earlier.astype(str)) if earlier.size else np.zeros(users.size, bool)
    return int(users.size), int(((counts >= 2) | seen).sum())


def count_in_spans(
    event_group: IntArray,
    event_ns: IntArray,
    span_group: IntArray,
    lo_ns: IntArray,
    hi_ns: IntArray,
) -> IntArray:
    """For each span, how many events of its group lie in ``[lo, hi]``. Times are ranked on
    one grid, so that (group, rank) packs into one sortable int64 without losing a nanosecond."""
    if not event_ns.size or not lo_ns.size:
        return np.zeros(lo_ns.shape, dtype=np.int64)
    grid = np.unique(np.concatenate([event_ns, lo_ns, hi_ns]))
    width = grid.size + 1
    events = np.sort(event_group * width + np.searchsorted(grid, event_ns))
    lo = span_group * width + np.searchsorted(grid, lo_ns)
    hi = span_group * width + np.searchsorted(grid, hi_ns)
    return np.asarray(
        np.searchsorted(events, hi, side="right") - np.searchsorted(events, lo, side="left"),
        dtype=np.int64,
    )


class SessionOutcomes:
    """Each session's outcome (module ``chargewatch.figures``: what success means), as masks of
    shape ``(n,)``; ``faults`` are the status events that may fall in the sessions."""

    def __init__(self, table: SessionTable, faults: StatusEvents) -> None:
        self.table = table
        self.finished: BoolArray = table.finished
        self.no_energy: BoolArray = self.finished & ~(
            np.nan_to_num(table.energy_wh) >= SUCCESS_MIN_WH
        )
        self.faulted: BoolArray = self.finished & (_faults_within(table, faults) > 0)
        self.stalled: BoolArray = self.finished & table.flagged_with(_STALL)
        self.meter_flagged: BoolArray = self.finished & table.flagged_with(METER_KINDS)
        failed = self.no_energy | self.faulted | self.stalled | self.meter_flagged
        self.successful: BoolArray = self.finished & ~failed

    def summary(self) -> Outcomes:
        """The counts over every session."""
        return self.by_group(np.zeros(len(self.table), dtype=np.int64), 1)[0]

    def by_group(self, group: IntArray, groups: int) -> list[Outcomes]:
        """The counts of each group ``0..groups-1`` (``group``: each session's), one
        ``bincount`` per figure whatever the number of groups."""

        def count(mask: BoolArray | None) -> list[int]:
            weights = None if mask is None else mask.astype(np.float64)
            found = np.bincount(group, weights, minlength=groups)
            return [round(v) for v in found.tolist()]

        columns = {
            "sessions": count(None),
            "open": count(~self.finished),
            "finished": count(self.finished),
            "successful": count(self.successful),
            "no_energy": count(self.no_energy),
            "faulted": count(self.faulted),
            "stalled": count(self.stalled),
            "meter_flagged": count(self.meter_flagged),
        }
        energy = np.bincount(group, np.nan_to_num(self.table.energy_wh), minlength=groups)
        return [
            Outcomes(**{name: values[g] for name, values in columns.items()}, energy_wh=float(e))
            for g, e in enumerate(energy.tolist())
        ]


def session_outcomes(table: SessionTable, faults: StatusEvents) -> SessionOutcomes:
    return SessionOutcomes(table, faults)


def _faults_within(table: SessionTable, faults: StatusEvents) -> IntArray:
    """How many Faulted statuses each session's connector, or its whole station (OCPP's
    connector 0: the charge point's main controller, which takes every connector down with it),
    reported from the session's start to its stop."""
    faulted = faults.faulted
    if not faulted.any() or not len(table):
        return np.zeros(len(table), dtype=np.int64)
    own = _within(table, table.connector_id, faults, faulted, faults.connector_id)
    station_wide = faulted & (faults.connector_id == 0)
    if not station_wide.any():
        return own
    zeros = np.zeros(len(faults), dtype=np.int64)
    return own + _within(table, np.zeros(len(table), dtype=np.int64), faults, station_wide, zeros)


def _within(
    table: SessionTable,
    session_key: IntArray,
    faults: StatusEvents,
    chosen: BoolArray,
    fault_key: IntArray,
) -> IntArray:
    """How many ``chosen`` faults lie in each session's span, matched by station and the keys
    given (each one's connector, or 0 for a station's own)."""
    keys = np.concatenate(
        [
            _connector_keys(table.station_id, session_key),
            _connector_keys(faults.station_id[chosen], fault_key[chosen]),
        ]
    )
    _, groups = np.unique(keys, return_inverse=True)
    n = len(table)
    return count_in_spans(
        groups[n:], faults.time_ns[chosen], groups[:n], table.start_ns, table.end_ns
    )


def _connector_keys(stations: ObjectArray, connectors: IntArray) -> np.ndarray:
    """``station<US>connector`` strings (US, the ASCII unit separator, is in no station id): one
    key per connector."""
    return np.char.add(np.char.add(stations.astype(str), "\x1f"), connectors.astype(str))
