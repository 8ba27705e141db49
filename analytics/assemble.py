"""Events in, ``SessionBatch`` out: grouping readings into sessions and orphan segments.

Readings are kept in flat typed columns (``array.array``) as they arrive; building a batch is
array work: rows are assigned by session index or, for readings outside any session, by orphan
segment (consecutive no-session readings of one connector, split by a long gap or by a session
starting on it); samples are ordered by ``(row, t_ns, arrival)`` with one ``lexsort`` (ties of
stamps by register where that fits: ``stamp_order``) and
scattered into the padded ``(n, m)`` arrays; the connector status in force at each sample comes
from one ``searchsorted`` over (connector, time) keys.

``Assembler`` streams: ``add`` events one by one (or ``add_readings``: many readings as
columns, for the file path), ``pop_complete`` hands out the sessions that have
stopped (and orphan segments that can no longer grow) once there are enough of them, and
``finish`` hands out the rest. ``assemble`` is the one-shot form for inputs that fit in memory.
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from analytics.batch import NO_TIME, FloatArray, IntArray, SessionBatch, StatusCode
from analytics.detectors.prepared import block_layout, compact_history
from analytics.detectors.ratings import AC_MAX_W, StationPeaks
from analytics.detectors.stamp_order import stamp_order
from chargewatch.events import (
    Authorize,
    ChargePointStatus,
    Event,
    Reading,
    SessionStart,
    SessionStop,
    StationEvent,
    StatusChange,
)
from chargewatch.schema import READING_FIELDS

__all__ = [
    "AUTHORIZE_WINDOW_NS",
    "ORPHAN_GAP_NS",
    "Assembler",
    "Handout",
    "ReadingColumns",
    "assemble",
    "empty_batch",
    "iter_batches",
]

logger = logging.getLogger(__name__)

ORPHAN_GAP_NS = 30 * 60 * 1_000_000_000  # a longer silence ends an orphan segment
AUTHORIZE_WINDOW_NS = 10 * 60 * 1_000_000_000  # an authorize this long before a start counts
MAX_CELLS = 2_000_000  # padded samples per batch: ~150 MB; detectors need a few times that

_VALUE_NAMES = READING_FIELDS  # a reading's measured values, in the order they are stored
_STATUS_CODE = {status: StatusCode[status.name] for status in ChargePointStatus}
# (connector, t_ns) -> the status in force, when it was reported, the next change (0: none)
StatusLookup = Callable[[IntArray, IntArray], tuple[np.ndarray, IntArray, IntArray]]
_NAN = float("nan")


class Handout:
    """Batches handed out by the assembler, built one at a time as they are iterated (only one
    needs to be in memory), and, when they are several, ``sample``: rows spread over all of them
    in one batch, to fit detectors on every part of the input (built when first asked for;
    ``history`` gives the same rows without the padding)."""

    def __init__(
        self,
        groups: list[IntArray],
        make: Callable[[IntArray], SessionBatch],
        sample: SessionBatch | None,
        *,
        sample_rows: IntArray | None = None,
        make_wide: Callable[[IntArray, int], SessionBatch] | None = None,
        counts: IntArray | None = None,
    ) -> None:
        self._groups = groups
        self._make = make
        self._sample = sample
        # the sample not made yet: its rows, how to make rows at least so wide, their lengths
        self._sample_rows = sample_rows
        self._make_wide = make_wide
        self._counts = counts

    @property
    def sample(self) -> SessionBatch | None:
        if self._sample is None and self._sample_rows is not None:
            self._sample = self._make(self._sample_rows)
            self._sample_rows = None
        return self._sample

    @sample.setter
    def sample(self, value: SessionBatch | None) -> None:
        self._sample = value
        self._sample_rows = None

    @property
    def has_sample(self) -> bool:
        return self._sample is not None or self._sample_rows is not None

    def history(self) -> SessionBatch | None:
        """The rows of ``sample`` to fit detectors on, as a ``compact_history`` when the padded
        batch would be mostly padding (what the detectors learn is the same: rows of like
        length made as ``row_blocks`` would cut them from it, none of the padding made);
        else ``sample`` itself. Not kept: made anew at each call."""
        rows, counts, make_wide = self._sample_rows, self._counts, self._make_wide
        if self._sample is not None or rows is None or counts is None or make_wide is None:
            return self._sample
        width = counts[rows]
        m = int(width.max()) if width.size else 0
        layout = block_layout(width, m)
        if layout is None:
            return self.sample
        order, bounds = layout
        blocks = [make_wide(rows[order[begin:end]], cut) for begin, end, cut in bounds]
        return compact_history(blocks, order, m)

    def __len__(self) -> int:
        return len(self._groups)

    def __iter__(self) -> Iterator[SessionBatch]:
        for group in self._groups:
            yield self._make(group)


@dataclass(frozen=True, slots=True)
class ReadingColumns:
    """Valid readings as columns, in order of arrival. Stations and sessions are given as codes
    into ``keys`` and ``session_ids`` (so they are looked up once per key, not per reading)."""

    arrival: IntArray
    ts_ns: IntArray
    key: IntArray  # index into keys: the reading's (station_id, connector_id)
    keys: Sequence[tuple[str, int]]
    session: IntArray  # index into session_ids, -1 for a reading outside any session
    session_ids: Sequence[str]
    values: tuple[FloatArray, ...]  # one per READING_FIELDS, NaN where not measured

    def __len__(self) -> int:
        return int(self.arrival.size)

    def rows(self, begin: int, end: int) -> ReadingColumns:
        """The readings ``begin:end`` (views, same codes)."""
        cut = slice(begin, end)
        return ReadingColumns(
            self.arrival[cut],
            self.ts_ns[cut],
            self.key[cut],
            self.keys,
            self.session[cut],
            self.session_ids,
            tuple(column[cut] for column in self.values),
        )


@dataclass(slots=True)
class _Session:
    station_id: str
    connector_id: int
    start_ns: int | None = None
    stop_ns: int | None = None
    id_pseudonym: str | None = None
    meter_start_wh: float = _NAN
    meter_stop_wh: float = _NAN
    stop_reason: str | None = None
    stopped_at: int = -1  # arrival of the stop event, -1 while open


@dataclass(slots=True)
class _Readings:
    """Flat columns of the readings not yet handed out, 8 bytes per value."""

    t_ns: array[int] = field(default_factory=lambda: array("q"))
    arrival: array[int] = field(default_factory=lambda: array("q"))
    connector: array[int] = field(default_factory=lambda: array("q"))  # index into connectors
    session: array[int] = field(default_factory=lambda: array("q"))  # index into sessions, -1
    values: tuple[array[float], ...] = field(
        default_factory=lambda: tuple(array("d") for _ in _VALUE_NAMES)
    )

    def __len__(self) -> int:
        return len(self.t_ns)

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the readings where ``mask`` is True."""
        self.t_ns = _compress(self.t_ns, mask)
        self.arrival = _compress(self.arrival, mask)
        self.connector = _compress(self.connector, mask)
        self.session = _compress(self.session, mask)
        self.values = tuple(_compress(column, mask) for column in self.values)


_Column = TypeVar("_Column", "array[int]", "array[float]")


def _compress(column: _Column, mask: np.ndarray) -> _Column:
    kept = array(column.typecode)
    kept.frombytes(_np(column)[mask].tobytes())
    return kept  # type: ignore[return-value]


def _extend(column: array[int] | array[float], values: np.ndarray) -> None:
    column.frombytes(np.ascontiguousarray(values, dtype=column.typecode).tobytes())


def _np(column: array[int] | array[float]) -> np.ndarray:
    """A NumPy copy of a column (a view would pin the array: it could not grow any more)."""
    dtype = np.float64 if column.typecode == "d" else np.int64
    return np.array(column, dtype=dtype) if len(column) else np.zeros(0, dtype=dtype)


class PeakWatch:
    """Each station's highest power and offered power over every reading it is shown, as
    columns (``columns``) or one by one (``reading``): ``ratings.StationPeaks``, what stations
    are rated by whichever rows the detectors are fitted on (``ratings.with_peaks``)."""

    def __init__(self) -> None:
        self._power: dict[str, float] = {}
        self._offered: dict[str, float] = {}
        self._connectors: dict[str, int] = {}  # the highest connector number seen

    def _connector(self, station_id: str, connector_id: int) -> None:
        if connector_id > self._connectors.get(station_id, 0):
            self._connectors[station_id] = connector_id

    def _keep(self, station_id: str, power: float, offered: float) -> None:
        if power == power and not power <= self._power.get(station_id, -np.inf):
            self._power[station_id] = power
        if offered == offered and not offered <= self._offered.get(station_id, -np.inf):
            self._offered[station_id] = offered

    def columns(self, readings: ReadingColumns) -> None:
        if not len(readings):
            return
        by_key = []
        value = {name: readings.values[_VALUE_NAMES.index(name)] for name in _VALUE_NAMES}
        power = np.fmax(value["power_w"], _dc_product_w(value["current_a"], value["voltage_v"]))
        for values in (power, value["power_offered_w"]):
            top = np.full(len(readings.keys), np.nan)
            np.fmax.at(top, readings.key, values)
            by_key.append(top.tolist())
        for (station_id, connector), power, offered in zip(readings.keys, *by_key, strict=True):
            if connector != 0:  # the station's own meter: every connector's power together
                self._keep(station_id, power, offered)
        for k in np.unique(readings.key).tolist():
            self._connector(*readings.keys[k])

    def reading(self, r: Reading) -> None:
        power = r.power_w if r.power_w is not None else np.nan
        if r.current_a is not None and r.voltage_v is not None:
            power = float(np.fmax(power, _dc_product_w(r.current_a, r.voltage_v)))
        offered = r.power_offered_w if r.power_offered_w is not None else np.nan
        if r.connector_id != 0:  # the station's own meter: every connector's power together
            self._keep(r.station_id, float(power), float(offered))
        self._connector(r.station_id, r.connector_id)

    def peaks(self) -> StationPeaks:
        ids = sorted(set(self._power) | set(self._offered) | set(self._connectors))
        return StationPeaks(
            np.array(ids, dtype=object),
            np.array([self._power.get(i, np.nan) for i in ids], dtype=np.float64),
            np.array([self._offered.get(i, np.nan) for i in ids], dtype=np.float64),
            np.array([self._connectors.get(i, 0) for i in ids], dtype=np.int64),
        )


class Assembler:
    """Collects events and builds ``SessionBatch``es from them (see the module docstring)."""

    def __init__(
        self,
        *,
        orphan_gap_ns: int = ORPHAN_GAP_NS,
        authorize_window_ns: int = AUTHORIZE_WINDOW_NS,
    ) -> None:
        self.orphan_gap_ns = orphan_gap_ns
        self.authorize_window_ns = authorize_window_ns
        self._readings = _Readings()
        self._sessions: list[_Session] = []
        self._session_index: dict[str, int] = {}
        self._session_ids: list[str] = []
        self._connectors: list[tuple[str, int]] = []
        self._connector_index: dict[tuple[str, int], int] = {}
        self._last_ns: list[int] = []  # per connector: latest ts of any of its events
        self._starts: list[tuple[int, int]] = []  # (connector, ts) of every session start
        self._statuses: tuple[array[int], array[int], array[int]] = (
            array("q"),
            array("q"),
            array("q"),
        )  # connector, ts, StatusCode
        self._authorizations: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self._handed_out: set[str] = set()
        self.late_readings = 0  # readings of sessions already handed out, dropped
        # which sessions those were (readings each) and their stations: judged again from the
        # input when it can be read twice (``analytics.late``)
        self.late_sessions: dict[str, int] = {}
        self.late_stations: set[str] = set()
        self.stopped = 0  # sessions stopped since the last pop_complete (the new generation)
        # pop_complete hands out the sessions stopped before the previous pop_complete, so
        # readings that arrive after their session's stop (a station uploading what it
        # buffered while offline) still find it: one generation of grace, counted in arrivals
        # (the file's order), which no charger clock can fake.
        self._latest_arrival = -1
        self._handout_mark = -1  # latest arrival at the previous pop_complete
        self.max_event_ns = NO_TIME
        # latest start, stop, status or authorize per station
        self._station_control_ns: dict[str, int] = {}
        self._station_last_ns: dict[str, int] = {}  # latest reading time per station
        # per connector: latest time of the readings taken by add_readings (kept apart from
        # _last_ns and _station_last_ns so they are updated with one array operation)
        self._bulk_last_ns = np.zeros(0, dtype=np.int64)

    # -- collecting ------------------------------------------------------------------------------

    @property
    def now_ns(self) -> int:
        """When the data is complete up to: the latest control event (start, stop, status,
        authorize) or, if later, the median over stations of their latest reading. Control
        events alone fall short at a quiet end of the data (idle connectors keep reporting for
        hours with no control event), and the median keeps one station whose clock runs years
        ahead from moving "now" for everyone. The same for control events: a station's latest
        counts only within ``CONTROL_AHEAD_NS`` of the median station's (a station whose clock
        ran 4.8 years ahead stamped a session's statuses and stop in 2030; "now" followed them,
        its readings were not in the future, and a data gap of 1,744 days took the place of
        the clock fault: an independently written fleet, outside seed 1, 120866)."""
        latest = dict(self._station_last_ns)
        bulk: list[int] = self._bulk_last_ns.tolist()
        for (station_id, _connector_id), ts_ns in zip(self._connectors, bulk, strict=False):
            if ts_ns > latest.get(station_id, NO_TIME):
                latest[station_id] = ts_ns
        lasts = sorted(latest.values())
        median = lasts[(len(lasts) - 1) // 2] if lasts else NO_TIME
        controls = sorted(self._station_control_ns.values())
        control = NO_TIME
        if controls:
            bound = controls[(len(controls) - 1) // 2] + CONTROL_AHEAD_NS
            control = controls[bisect_right(controls, bound) - 1]
        return max(control, median)

    def add(self, arrival: int, event: Event) -> None:
        """Take one event; ``arrival`` is its order of arrival (the file line number). A
        station event (liveness) is part of no session: it is skipped."""
        if type(event) is StationEvent:
            return
        if arrival > self._latest_arrival:
            self._latest_arrival = arrival
        ts_ns = event.ts_ns
        if ts_ns > self.max_event_ns:
            self.max_event_ns = ts_ns
        if type(event) is Reading:
            if ts_ns > self._station_last_ns.get(event.station_id, NO_TIME):
                self._station_last_ns[event.station_id] = ts_ns
            self._add_reading(arrival, event)
            return
        if ts_ns > self._station_control_ns.get(event.station_id, NO_TIME):
            self._station_control_ns[event.station_id] = ts_ns
        if isinstance(event, SessionStart):
            self._add_start(event, ts_ns)
        elif isinstance(event, SessionStop):
            self._add_stop(arrival, event, ts_ns)
        elif isinstance(event, StatusChange):
            conn = self._connector(event.station_id, event.connector_id, ts_ns)
            connectors, times, codes = self._statuses
            connectors.append(conn)
            times.append(ts_ns)
            codes.append(_STATUS_CODE[event.status])
        elif isinstance(event, Authorize):
            key = (event.station_id, event.id_pseudonym)
            self._authorizations.setdefault(key, []).append((ts_ns, event.result.value))

    def _add_start(self, event: SessionStart, ts_ns: int) -> None:
        conn = self._connector(event.station_id, event.connector_id, ts_ns)
        session = self._session(event.session_id, event.station_id, event.connector_id)
        if session is None:
            return
        session.start_ns = ts_ns
        session.id_pseudonym = event.id_pseudonym
        session.meter_start_wh = _or_nan(event.meter_start_wh)
        self._starts.append((conn, ts_ns))

    def _add_stop(self, arrival: int, event: SessionStop, ts_ns: int) -> None:
        self._connector(event.station_id, event.connector_id, ts_ns)
        session = self._session(event.session_id, event.station_id, event.connector_id)
        if session is None:
            return
        if session.stopped_at < 0:
            self.stopped += 1
        session.stop_ns = ts_ns
        session.meter_stop_wh = _or_nan(event.meter_stop_wh)
        session.stop_reason = event.reason
        session.stopped_at = arrival

    def register_first_seen(
        self, readings: ReadingColumns, events: Sequence[tuple[int, Event]]
    ) -> None:
        """Register the connectors and sessions that ``readings`` and ``events`` (one chunk,
        with their arrival numbers) bring, in order of first sight across both: as adding
        them in order of arrival would. Afterwards the chunk's events and readings may be
        added in any order between hand-outs, and its readings in a few large slices rather
        than one slice before each event that registers something."""
        connectors, sessions = self._unseen_in_readings(readings)
        for arrival, event in events:
            if isinstance(event, Authorize | StationEvent):
                continue
            key = (event.station_id, event.connector_id)
            if key not in self._connector_index:
                connectors.append((arrival, event.station_id, event.connector_id, event.ts_ns))
            session_id = None if isinstance(event, StatusChange) else event.session_id
            if session_id is not None and session_id not in self._session_index:
                sessions.append((arrival, session_id, event.station_id, event.connector_id))
        for _arrival, station_id, connector_id, ts_ns in sorted(connectors):
            if (station_id, connector_id) not in self._connector_index:
                self._connector(station_id, connector_id, ts_ns)
        for _arrival, session_id, station_id, connector_id in sorted(sessions):
            self._session(session_id, station_id, connector_id)

    def _unseen_in_readings(
        self, readings: ReadingColumns
    ) -> tuple[list[tuple[int, str, int, int]], list[tuple[int, str, str, int]]]:
        """The connectors (arrival, station, connector, ts) and sessions (arrival, session,
        station, connector) that ``readings`` bring and are not registered yet, each at its
        first reading."""
        connectors: list[tuple[int, str, int, int]] = []
        sessions: list[tuple[int, str, str, int]] = []
        if not len(readings):
            return connectors, sessions
        codes, first = np.unique(readings.key, return_index=True)
        for code, at in zip(codes.tolist(), first.tolist(), strict=True):
            station_id, connector_id = readings.keys[code]
            if (station_id, connector_id) not in self._connector_index:
                arrival, ts_ns = int(readings.arrival[at]), int(readings.ts_ns[at])
                connectors.append((arrival, station_id, connector_id, ts_ns))
        has = np.flatnonzero(readings.session >= 0)
        codes, first = np.unique(readings.session[has], return_index=True)
        for code, at in zip(codes.tolist(), has[first].tolist(), strict=True):
            session_id = readings.session_ids[code]
            if session_id not in self._session_index:
                station_id, connector_id = readings.keys[int(readings.key[at])]
                sessions.append((int(readings.arrival[at]), session_id, station_id, connector_id))
        return connectors, sessions

    def add_readings(self, readings: ReadingColumns) -> None:
        """Take many valid readings at once, as ``add`` would take them one by one: connectors
        and sessions they bring are registered in order of first sight."""
        if not len(readings):
            return
        ts_ns = readings.ts_ns
        self.max_event_ns = max(self.max_event_ns, int(ts_ns.max()))
        self._latest_arrival = max(self._latest_arrival, int(readings.arrival.max()))
        codes, first, inverse = np.unique(readings.key, return_index=True, return_inverse=True)
        keys = [readings.keys[code] for code in codes.tolist()]
        found = [self._connector_index.get(key) for key in keys]
        if None in found:
            for k in np.argsort(first, kind="stable").tolist():  # new ones in order of sight
                if found[k] is None:
                    station_id, connector_id = keys[k]
                    found[k] = self._connector(station_id, connector_id, int(ts_ns[first[k]]))
        conn = np.array(found, dtype=np.int64)
        conn_of = conn[inverse.reshape(-1)]
        if self._bulk_last_ns.size < len(self._connectors):
            grow = len(self._connectors) - self._bulk_last_ns.size
            self._bulk_last_ns = np.append(self._bulk_last_ns, np.full(grow, NO_TIME))
        np.maximum.at(self._bulk_last_ns, conn_of, ts_ns)
        session_of = self._session_rows(readings, conn_of)
        taken = session_of != -2
        if not taken.all():
            self.late_readings += int(np.count_nonzero(~taken))
            codes, counts = np.unique(readings.session[~taken], return_counts=True)
            for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
                session_id = readings.session_ids[code]
                self.late_sessions[session_id] = self.late_sessions.get(session_id, 0) + count
            for code in np.unique(conn_of[~taken]).tolist():
                self.late_stations.add(self._connectors[code][0])
        cols = self._readings
        _extend(cols.t_ns, ts_ns[taken])
        _extend(cols.arrival, readings.arrival[taken])
        _extend(cols.connector, conn_of[taken])
        _extend(cols.session, session_of[taken])
        for column, values in zip(cols.values, readings.values, strict=True):
            _extend(column, values[taken])

    def _session_rows(self, readings: ReadingColumns, conn_of: IntArray) -> IntArray:
        """Index into sessions of each reading: -1 outside any session, -2 for a reading of a
        session already handed out (late); new sessions are registered in order of sight."""
        out = np.full(len(readings), -1, dtype=np.int64)
        has = np.flatnonzero(readings.session >= 0)
        if not has.size:
            return out
        codes, first, inverse = np.unique(
            readings.session[has], return_index=True, return_inverse=True
        )
        session_ids = [readings.session_ids[code] for code in codes.tolist()]
        found = [self._session_index.get(session_id) for session_id in session_ids]
        if None in found:
            for k in np.argsort(first, kind="stable").tolist():  # new ones in order of sight
                if found[k] is not None:
                    continue
                station_id, connector_id = self._connectors[int(conn_of[has[first[k]]])]
                if self._session(session_ids[k], station_id, connector_id) is None:
                    found[k] = -2
                else:
                    found[k] = self._session_index[session_ids[k]]
        rows = np.array(found, dtype=np.int64)
        out[has] = rows[inverse.reshape(-1)]
        return out

    def _add_reading(self, arrival: int, r: Reading) -> None:
        # The hot path (a million calls per file): lookups inlined, the seven appends unrolled.
        ts_ns, station_id, connector_id, session_id = r[0], r[1], r[2], r[3]
        conn = self._connector_index.get((station_id, connector_id))
        if conn is None:
            conn = self._connector(station_id, connector_id, ts_ns)
        elif ts_ns > self._last_ns[conn]:
            self._last_ns[conn] = ts_ns
        index = -1
        if session_id is not None:
            found = self._session_index.get(session_id)
            if found is None:
                if self._session(session_id, station_id, connector_id) is None:
                    self.late_readings += 1
                    self.late_sessions[session_id] = self.late_sessions.get(session_id, 0) + 1
                    self.late_stations.add(station_id)
                    return
                found = self._session_index[session_id]
            index = found
        cols = self._readings
        cols.t_ns.append(ts_ns)
        cols.arrival.append(arrival)
        cols.connector.append(conn)
        cols.session.append(index)
        energy, power, offered, current, voltage, soc, temperature = cols.values
        nan = _NAN
        energy.append(nan if r[4] is None else r[4])
        power.append(nan if r[5] is None else r[5])
        offered.append(nan if r[6] is None else r[6])
        current.append(nan if r[7] is None else r[7])
        voltage.append(nan if r[8] is None else r[8])
        soc.append(nan if r[9] is None else r[9])
        temperature.append(nan if r[10] is None else r[10])

    def _connector(self, station_id: str, connector_id: int, ts_ns: int) -> int:
        key = (station_id, connector_id)
        index = self._connector_index.get(key)
        if index is None:
            index = self._connector_index[key] = len(self._connectors)
            self._connectors.append(key)
            self._last_ns.append(ts_ns)
        else:
            self._last_ns[index] = max(self._last_ns[index], ts_ns)
        return index

    def _session(self, session_id: str, station_id: str, connector_id: int) -> _Session | None:
        index = self._session_index.get(session_id)
        if index is not None:
            return self._sessions[index]
        if session_id in self._handed_out:
            return None
        self._session_index[session_id] = len(self._sessions)
        self._session_ids.append(session_id)
        session = _Session(station_id, connector_id)
        self._sessions.append(session)
        return session

    # -- handing out -----------------------------------------------------------------------------

    def pop_complete(
        self,
        *,
        min_sessions: int = 1,
        max_cells: int | None = MAX_CELLS,
        sample_cells: int | None = None,
    ) -> Handout:
        """The sessions that stopped before the previous call, and finished orphan segments,
        once at least ``min_sessions`` sessions have stopped since then (nothing before that),
        in batches of at most ``max_cells`` padded samples. Sessions that stopped since the
        previous call wait for the next one: late readings of theirs are still taken.

        ``sample_cells`` (``max_cells`` when None; 0: no sample) sizes ``Handout.sample``
        apart from the batches: every row as one batch when that fits in ``sample_cells``,
        else rows spread over them, so a caller may score in small batches of like length
        and still fit on what ``sample_cells`` batches would have given."""
        if self.stopped < min_sessions:
            return Handout([], _nothing, None)
        mark, self._handout_mark = self._handout_mark, self._latest_arrival
        if mark < 0:
            # The first call: no session has had its grace yet. Orphan segments wait too, so
            # that the first hand-out (which detectors are fitted on) holds sessions.
            self.stopped = 0
            return Handout([], _nothing, None)
        done = np.array([0 <= s.stopped_at <= mark for s in self._sessions], dtype=bool)
        return self._build(done, orphans_all=False, max_cells=max_cells, sample_cells=sample_cells)

    def finish(self, *, max_cells: int | None = None, sample_cells: int | None = None) -> Handout:
        """Everything still held, open sessions included (their ``stop_ns`` is ``NO_TIME``);
        one batch in order of first sight unless ``max_cells`` asks for several
        (``sample_cells``: as for ``pop_complete``)."""
        every = np.ones(len(self._sessions), dtype=bool)
        return self._build(every, orphans_all=True, max_cells=max_cells, sample_cells=sample_cells)

    def _build(
        self,
        take_sessions: np.ndarray,
        *,
        orphans_all: bool,
        max_cells: int | None,
        sample_cells: int | None = None,
    ) -> Handout:
        cols = self._readings
        t_ns = _np(cols.t_ns)
        conn = _np(cols.connector)
        sess = _np(cols.session)
        n_sessions = int(take_sessions.sum())

        # Session rows first, in the order the sessions were first seen, then orphan segments.
        session_row = np.full(len(self._sessions) + 1, -1, dtype=np.int64)  # [-1] is "none"
        session_row[:-1][take_sessions] = np.arange(n_sessions)
        row = session_row[sess]
        orphan = sess < 0
        seg_of, seg_conn, seg_done = self._orphan_segments(t_ns, conn, orphan, orphans_all)
        seg_row = np.where(seg_done, n_sessions + np.cumsum(seg_done) - 1, -1)
        row[orphan] = seg_row[seg_of[orphan]]
        taken = row >= 0
        n_rows = n_sessions + int(seg_done.sum())
        counts = np.bincount(row[taken], minlength=n_rows)
        meta = self._session_meta(take_sessions, seg_conn[seg_done])
        is_orphan = meta.pop("orphan")
        arrival = _np(cols.arrival)
        values = [_np(c) for c in cols.values]
        lookup = self._status_table()
        taken_idx = np.flatnonzero(taken)
        taken_row = row[taken_idx]

        def make_wide(group: IntArray, width: int) -> SessionBatch:
            """The rows ``group``, in that order, at least ``width`` samples wide."""
            local = np.full(n_rows, -1, dtype=np.int64)
            local[group] = np.arange(group.size)
            pick = taken_idx[local[taken_row] >= 0]
            columns = _scatter(
                local[row[pick]],
                t_ns[pick],
                arrival[pick],
                conn[pick],
                [column[pick] for column in values],
                group.size,
                lookup,
                width,
            )
            batch = SessionBatch(**{k: v[group] for k, v in meta.items()}, **columns)
            return _with_dc_power(_with_times(batch, is_orphan[group]))

        def make(group: IntArray) -> SessionBatch:
            return make_wide(group, 0)

        groups = _groups(counts, max_cells)
        rows: IntArray | None = None
        if sample_cells is None:
            rows = _sample(counts, max_cells) if len(groups) > 1 and max_cells else None
        elif len(groups) > 1 and sample_cells:
            one = len(_groups(counts, sample_cells)) == 1  # as one batch of sample_cells
            rows = np.arange(counts.size) if one else _sample(counts, sample_cells)
        cols.keep(~taken)
        self._forget(take_sessions)
        return Handout(groups, make, None, sample_rows=rows, make_wide=make_wide, counts=counts)

    def _orphan_segments(
        self, t_ns: IntArray, conn: IntArray, orphan: np.ndarray, orphans_all: bool
    ) -> tuple[IntArray, IntArray, np.ndarray]:
        """Segment index of each orphan reading (0 for others), each segment's connector, and
        whether each segment is finished (a start or a long silence followed it)."""
        idx = np.flatnonzero(orphan)
        seg_of = np.zeros(t_ns.size, dtype=np.int64)
        if idx.size == 0:
            return seg_of, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        order = idx[np.lexsort((t_ns[idx], conn[idx]))]
        o_conn, o_t = conn[order], t_ns[order]
        starts = np.array(self._starts, dtype=np.int64).reshape(-1, 2)
        ranks = _Ranks(starts[:, 1])
        start_keys = np.sort(ranks.key(starts[:, 0], starts[:, 1]))
        # number of session starts on the connector strictly before each reading: a reading
        # stamped at a start's instant (stations stamping whole seconds or minutes report their
        # idle register, then open the session) belongs to the segment before it
        before = np.searchsorted(start_keys, ranks.key(o_conn, o_t), side="left")
        new = np.ones(order.size, dtype=bool)
        new[1:] = (
            (o_conn[1:] != o_conn[:-1])
            | (np.diff(o_t) > self.orphan_gap_ns)
            | (before[1:] != before[:-1])
        )
        seg_sorted = np.cumsum(new) - 1
        seg_of[order] = seg_sorted
        first = np.flatnonzero(new)
        last = np.append(first[1:], order.size) - 1
        seg_conn = o_conn[first]
        if orphans_all:
            return seg_of, seg_conn, np.ones(first.size, dtype=bool)
        last_t = o_t[last]
        # started: a session began on the connector after the segment's last reading, or at
        # its instant (that reading belongs before the session, as above)
        started_after = np.searchsorted(
            start_keys, ranks.key(seg_conn, last_t), side="left"
        ) < np.searchsorted(start_keys, ranks.connector_end(seg_conn))
        last_ns = np.array(self._last_ns, dtype=np.int64)
        bulk = self._bulk_last_ns
        last_ns[: bulk.size] = np.maximum(last_ns[: bulk.size], bulk)
        silent = last_ns[seg_conn] - last_t > self.orphan_gap_ns
        return seg_of, seg_conn, started_after | silent

    def _status_table(self) -> StatusLookup:
        """``status_lookup`` over the status changes seen so far."""
        return status_lookup(*(_np(column) for column in self._statuses))

    def _session_meta(self, take: np.ndarray, orphan_conn: IntArray) -> dict[str, Any]:
        """Per-row columns; start/stop of rows without their own events are filled in by
        ``_with_times`` from the samples."""
        # Per-session Python: sessions are few next to their samples.
        picked: list[int] = np.flatnonzero(take).tolist()
        sessions = [self._sessions[i] for i in picked]
        n_orphans = orphan_conn.size
        conns = [self._connectors[c] for c in orphan_conn.tolist()]
        missing = [NO_TIME] * n_orphans
        return {
            "session_id": _objects([self._session_ids[i] for i in picked] + [None] * n_orphans),
            "station_id": _objects([s.station_id for s in sessions] + [c[0] for c in conns]),
            "connector_id": np.array(
                [s.connector_id for s in sessions] + [c[1] for c in conns], dtype=np.int64
            ),
            "start_ns": np.array(
                [NO_TIME if s.start_ns is None else s.start_ns for s in sessions] + missing,
                dtype=np.int64,
            ),
            "stop_ns": np.array(
                [NO_TIME if s.stop_ns is None else s.stop_ns for s in sessions] + missing,
                dtype=np.int64,
            ),
            "id_pseudonym": _objects([s.id_pseudonym for s in sessions] + [None] * n_orphans),
            "auth_result": _objects([self._auth_result(s) for s in sessions] + [None] * n_orphans),
            "meter_start_wh": np.array(
                [s.meter_start_wh for s in sessions] + [_NAN] * n_orphans, dtype=np.float64
            ),
            "meter_stop_wh": np.array(
                [s.meter_stop_wh for s in sessions] + [_NAN] * n_orphans, dtype=np.float64
            ),
            "stop_reason": _objects([s.stop_reason for s in sessions] + [None] * n_orphans),
            "orphan": np.array([False] * len(sessions) + [True] * n_orphans, dtype=bool),
        }

    def _auth_result(self, s: _Session) -> str | None:
        if s.id_pseudonym is None or s.start_ns is None:
            return None
        seen = self._authorizations.get((s.station_id, s.id_pseudonym))
        if not seen:
            return None
        seen.sort()
        at = bisect_right(seen, (s.start_ns, "\uffff")) - 1
        if at < 0 or seen[at][0] < s.start_ns - self.authorize_window_ns:
            return None
        return seen[at][1]

    def _forget(self, taken: np.ndarray) -> None:
        """Drop handed-out sessions; their ids are remembered so late readings are not taken
        for a new session."""
        keep = [i for i in range(len(self._sessions)) if not taken[i]]
        for i in np.flatnonzero(taken).tolist():
            self._handed_out.add(self._session_ids[i])
        remap = np.full(len(self._sessions) + 1, -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        sess = _np(self._readings.session)
        self._readings.session = array("q", remap[sess].tobytes())
        self._sessions = [self._sessions[i] for i in keep]
        self._session_ids = [self._session_ids[i] for i in keep]
        self._session_index = {sid: k for k, sid in enumerate(self._session_ids)}
        self.stopped = sum(1 for s in self._sessions if s.stopped_at > self._handout_mark)


# A station's latest start, stop, status or authorize this far after the median station's is
# stamped by a clock running ahead, not data the others lack: no session lasts longer (the
# window's look-back, ``analytics.read.partition.SESSION_LOOKBACK_NS``), so over a file's span
# the stations' latest control events lie within it of each other unless they fell silent.
CONTROL_AHEAD_NS = 48 * 3600 * 1_000_000_000


def status_lookup(s_conn: IntArray, s_t: IntArray, s_code: np.ndarray) -> StatusLookup:
    """A lookup of the StatusCode in force on ``conn`` at ``t_ns`` (the latest change at or
    before it; of changes at one time, the last given), when it was reported, and when the
    next change on ``conn`` was (0 where none), over the changes given as connector, time and
    code."""
    ranks = _Ranks(s_t)
    s_key = ranks.key(s_conn, s_t)
    order = np.argsort(s_key, kind="stable")  # equal keys keep the order given: last one wins
    s_key, s_conn, s_t, s_code = s_key[order], s_conn[order], s_t[order], s_code[order]

    def lookup(conn: IntArray, t_ns: IntArray) -> tuple[np.ndarray, IntArray, IntArray]:
        if s_key.size == 0 or conn.size == 0:
            none = np.zeros(conn.size, dtype=np.int64)
            return np.zeros(conn.size, dtype=np.int8), none, none.copy()
        at = np.searchsorted(s_key, ranks.key(conn, t_ns), side="right") - 1
        hit = at >= 0
        hit[hit] = s_conn[at[hit]] == conn[hit]
        code = np.where(hit, s_code[np.maximum(at, 0)], StatusCode.UNKNOWN).astype(np.int8)
        since = np.where(hit, s_t[np.maximum(at, 0)], 0)
        nxt = np.minimum(at + 1, s_key.size - 1)
        later = (at + 1 < s_key.size) & (s_conn[nxt] == conn)
        until = np.where(later, s_t[nxt], 0)
        return code, since.astype(np.int64), until.astype(np.int64)

    return lookup


class _Ranks:
    """Packs (connector, time) into one sortable int64 key, time counted by the reference times
    (starts, status changes: few) before it: twice the number strictly before it, plus one when
    it equals one. For a reference time r and any t, r <= t exactly when rank(r) <= rank(t), and
    r < t exactly when rank(r) < rank(t), so comparisons against the references hold, ties
    included (stations stamping whole seconds or minutes make ties common)."""

    def __init__(self, reference_ns: IntArray) -> None:
        self._sorted = np.sort(reference_ns)
        self._width = 2 * self._sorted.size + 2

    def key(self, conn: IntArray, t_ns: IntArray) -> IntArray:
        rank = np.searchsorted(self._sorted, t_ns, side="left") + np.searchsorted(
            self._sorted, t_ns, side="right"
        )
        return np.asarray(conn * self._width + rank, dtype=np.int64)

    def connector_end(self, conn: IntArray) -> IntArray:
        """A key above every key of ``conn``."""
        return np.asarray((conn + 1) * self._width, dtype=np.int64)


def _scatter(
    row: IntArray,
    t_ns: IntArray,
    arrival: IntArray,
    conn: IntArray,
    values: list[np.ndarray],
    n_rows: int,
    status_lookup: StatusLookup,
    min_width: int = 0,
) -> dict[str, Any]:
    """Per-sample columns ordered by (row, t_ns), readings that share a stamp by their
    registers (or SoC) where that fits and else by arrival (``stamp_order``), and padded to
    the longest row (or to ``min_width``, if wider)."""
    keys = [values[_VALUE_NAMES.index(name)] for name in ("energy_wh", "soc_pct")]
    order = stamp_order(row, t_ns, keys, arrival)
    row, t_ns, arrival, conn = row[order], t_ns[order], arrival[order], conn[order]
    count = np.bincount(row, minlength=n_rows).astype(np.int64)
    width = max(int(count.max()) if n_rows and row.size else 0, min_width)
    offsets = np.concatenate(([0], np.cumsum(count)[:-1])) if n_rows else np.zeros(0, np.int64)
    pos = np.arange(row.size) - offsets[row]
    shape = (n_rows, width)
    out: dict[str, Any] = {"n_samples": count}
    for name, column, pad in (("t_ns", t_ns, 0), ("arrival", arrival, 0)):
        full = np.full(shape, pad, dtype=np.int64)
        full[row, pos] = column
        out[name] = full
    valid = np.zeros(shape, dtype=bool)
    valid[row, pos] = True
    out["valid"] = valid
    for name, column in zip(_VALUE_NAMES, values, strict=True):
        full_f = np.full(shape, np.nan)
        full_f[row, pos] = column[order]
        out[name] = full_f
    code, since, until = status_lookup(conn, t_ns)
    status = np.zeros(shape, dtype=np.int8)
    status[row, pos] = code
    out["status"] = status
    for name, column in (("status_since_ns", since), ("status_until_ns", until)):
        full = np.zeros(shape, dtype=np.int64)
        full[row, pos] = column
        out[name] = full
    return out


def _groups(counts: IntArray, max_cells: int | None) -> list[IntArray]:
    """Rows grouped so that each group's padded size (rows x longest row) stays within
    ``max_cells``: rows of like length together (sorted by length, ties in order of first
    sight), so that little of a batch is padding, which every detector pass would cross.
    Kinds that compare sessions with each other are judged across groups
    (``analytics.pipeline``)."""
    n = counts.size
    if max_cells is None or n == 0:
        return [np.arange(n)]
    order = np.argsort(counts, kind="stable")
    groups: list[IntArray] = []
    begin = 0
    for end, length in enumerate(counts[order].tolist(), start=1):
        # sorted: the row just added is the longest of the group
        if end - begin > 1 and (end - begin) * max(length, 1) > max_cells:
            groups.append(np.sort(order[begin : end - 1]))
            begin = end - 1
    groups.append(np.sort(order[begin:n]))
    return groups


def _nothing(_rows: IntArray) -> SessionBatch:
    return empty_batch()


def _sample(counts: IntArray, max_cells: int) -> IntArray:
    """Rows spread evenly over the order of first sight, as many as fit in ``max_cells`` padded
    to the longest of them: what detectors are fitted on when one batch cannot hold it all."""
    n = counts.size
    longest = max(int(counts.max(initial=1)), 1)
    k = max(1, min(n, max_cells // longest))
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def _with_times(batch: SessionBatch, orphan: np.ndarray) -> SessionBatch:
    """A start for rows without a session_start (first sample; else their stop), and the last
    sample as the end of an orphan segment."""
    n = batch.n_sessions
    count = batch.n_samples
    has = count > 0
    rows = np.arange(n)
    width = batch.n_steps
    first_t = batch.t_ns[rows, 0] if width else np.zeros(n, np.int64)
    last_t = batch.t_ns[rows, np.maximum(count - 1, 0)] if width else np.zeros(n, np.int64)
    no_start = batch.start_ns == NO_TIME
    batch.start_ns[no_start & has] = first_t[no_start & has]
    lone_stop = no_start & ~has
    batch.start_ns[lone_stop] = batch.stop_ns[lone_stop]
    batch.stop_ns[orphan] = last_t[orphan]
    return batch


def _dc_product_w(current_a: Any, voltage_v: Any) -> Any:
    """Current times voltage where it exceeds ``AC_MAX_W`` (a DC station's power: no AC
    connector delivers that much), else NaN; what ``_with_dc_power`` takes for power, here
    for one reading or a column (the peaks stations are rated by: ``PeakWatch``)."""
    with np.errstate(invalid="ignore"):
        product = np.multiply(current_a, voltage_v, dtype=np.float64)
        return np.where(product > AC_MAX_W, product, np.nan)


def _with_dc_power(batch: SessionBatch) -> SessionBatch:
    """Power where a DC station reports only current and voltage: their product, in place.

    Many stations sample ``Current.Import`` and ``Voltage`` but not ``Power.Active.Import``
    (OCPP lets each measurand be configured apart). On DC the product is the power itself. On
    AC it is not known: the current may be one phase's of three or the sum, and the voltage
    phase to neutral or between phases. So only rows shown to be DC are filled: a reading
    whose current times voltage exceeds ``AC_MAX_W`` (3 x 32 A x 250 V: no AC connector
    delivers more, whatever the convention). Reported power is never replaced. An
    independently written fleet's DC stations reporting current and voltage alone had every
    meter_mismatch, meter_stuck and early_taper missed (outside seeds 1-4: 49 labels)."""
    power = batch.power_w
    with np.errstate(invalid="ignore"):
        product = batch.current_a * batch.voltage_v
        derivable = np.isnan(power) & ~np.isnan(product)
        if not derivable.any():
            return batch
        # a row is DC where one of its readings' products is a DC power (``_dc_product_w``)
        dc = np.any(derivable & (product > AC_MAX_W), axis=1)
        fill = derivable & dc[:, None] & (product >= 0.0)
    power[fill] = product[fill]
    return batch


def _objects(items: list[str | None]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _or_nan(value: float | None) -> float:
    return _NAN if value is None else value


def empty_batch() -> SessionBatch:
    """A batch of no sessions."""
    return next(iter(Assembler().finish()))


def assemble(events: Iterable[tuple[int, Event]]) -> SessionBatch:
    """All of ``events`` (``(arrival, event)`` pairs) as one batch, open sessions included,
    rows in the order sessions were first seen, then orphan segments."""
    assembler = Assembler()
    for arrival, event in events:
        assembler.add(arrival, event)
    return next(iter(assembler.finish()))


def iter_batches(
    events: Iterable[tuple[int, Event]],
    *,
    max_sessions: int = 10_000,
    max_cells: int = MAX_CELLS,
) -> Iterator[SessionBatch]:
    """``events`` as batches streamed as sessions complete: once ``max_sessions`` have stopped
    they are handed out, in batches of at most ``max_cells`` padded samples. Memory holds the
    open sessions and the batches being handed out, whatever the input's size."""
    assembler = Assembler()
    for arrival, event in events:
        assembler.add(arrival, event)
        if assembler.stopped >= max_sessions:
            yield from _nonempty(assembler.pop_complete(max_cells=max_cells))
    yield from _nonempty(assembler.finish(max_cells=max_cells))
    if assembler.late_readings:
        logger.warning(
            "%d readings arrived after their session was handed out and were left out",
            assembler.late_readings,
        )


def _nonempty(batches: Iterable[SessionBatch]) -> Iterator[SessionBatch]:
    return (batch for batch in batches if batch.n_sessions)
