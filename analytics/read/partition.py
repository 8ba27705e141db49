"""One window of InfluxDB for the detection job, read a partition of stations at a time.

The job judges the sessions of ``[since, until)``: those that stopped in it, those still open at
``until``, and those that readings arriving late (received in the window, stamped before it) say
must be judged again. For some stations (a partition, so memory follows its size, not the
network's) this module reads what that takes, in columns:

- session starts and stops ``lookback.session_ns`` back (no session lasts longer);
- readings by their stamp from the earliest start of a judged session to ``until`` (a band of
  ``RX_BAND_NS`` wider on both sides, where stamps stray from receive times), and by their
  receive time (``reading_rx``: stamps far off, a wrong clock or a late arrival) over the same
  range; each reading once, and only those received before ``until`` (what had arrived when the
  window closed). Their order of arrival is their receive time (``rx_us``), their times the
  chargers' stamps (``schema.reading_stamp_ns``): what the file path sees of the same events;
- energy outside sessions (orphan readings) on each connector from its last stop before that
  earliest start, so an orphan segment that began before the window is judged whole;
- statuses a day before the earliest start, authorizations ``lookback.authorize_ns`` before.

Readings come as a streamed (chunked) answer and are folded into NumPy columns chunk by chunk;
the window's own readings as one series for the whole partition (tags as columns), and only
the fields detection uses (``DETECTION_FIELDS``): InfluxDB's cost of a query follows the series
and fields it touches far more than its time range. Statuses and authorizations come in the
same request. Every query bounds time on both ends.

Stations belong to a fixed number of station partitions by a hash of their id
(``partition_of``): the detection job leases partitions, so several service instances share the
network (``analytics.jobs``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from analytics.assemble import ReadingColumns
from chargewatch.events import (
    AuthorizationStatus,
    Authorize,
    ChargePointErrorCode,
    ChargePointStatus,
    Event,
    EventType,
    SessionStart,
    SessionStop,
    StatusChange,
)
from chargewatch.influx import InfluxClient, Series, quote_ident, quote_literal
from chargewatch.schema import (
    READING_FIELDS,
    RX_BAND_NS,
    RX_FIELD,
    RX_MEASUREMENT,
    Lookback,
    reading_stamp_ns,
    series_rows,
    session_starts,
    session_stops,
    text_value,
)

__all__ = [
    "DETECTION_FIELDS",
    "SESSION_LOOKBACK_NS",
    "PartitionEvents",
    "ReadingCache",
    "SessionEvents",
    "list_stations",
    "partition_of",
    "partition_stations",
    "read_partition",
    "read_sessions",
    "read_spans",
    "station_partitions",
]

_NS_PER_S = 1_000_000_000
SESSION_LOOKBACK_NS = 48 * 3600 * _NS_PER_S  # no session is expected to last longer
# The reading fields detection reads: every one (current and voltage give the power of a DC
# station that reports no power: ``assemble._with_dc_power``). The receive time comes with
# them, so every reading the ingest stored (it always records one) is found, whatever fields
# it carries.
DETECTION_FIELDS: tuple[str, ...] = READING_FIELDS
_READ_COLUMNS = ", ".join(quote_ident(name) for name in (*DETECTION_FIELDS, RX_FIELD, "session_id"))


@dataclass(slots=True)
class SessionEvents:
    """A partition's session starts and stops over the look-back, the sessions the window
    judges (stopped in it, open at its end, or judged again), those judged again for readings
    that arrived after their last judgement (with how many), and where the judged ones begin."""

    starts: list[SessionStart]
    stops: list[SessionStop]
    judged: set[str]
    late: dict[str, int]
    earliest_ns: int


@dataclass(slots=True)
class PartitionEvents:
    """What one partition's window holds: control events (starts, stops, statuses,
    authorizations) in time order and readings as columns."""

    control: list[Event]
    readings: ReadingColumns


@dataclass(slots=True)
class ReadingCache:
    """What one partition's window read that the next window (starting where it ended, or up
    to the job's settle time before) needs again: the readings of sessions open at its end, and
    per connector those outside sessions since its last stop (by stamp or by receipt). The job
    keeps one per partition, so an open session's readings cross InfluxDB once, not at every
    window. A session judged again after it left the cache is read whole from InfluxDB, its
    wrong-clock readings by receive time from its start (``_unheld_from``)."""

    until_ns: int
    open_sessions: set[str]
    orphans_from: dict[tuple[str, int], int]
    table: dict[str, np.ndarray]
    keys: list[tuple[str, int]]
    session_ids: list[str]
    # the result lines (profiles, usage pieces) the window wrote, by hash, which the next
    # need not write again word for word (``analytics.window``)
    written: set[int] = field(default_factory=set)
    # the taper band the window scored with (``analytics.window._Band``), which the next window
    # scores with again while it serves
    band: object = None
    # the last verdict of each open session, by id (``analytics.window._Verdict``): the next
    # window does not judge again a session whose data, and the clock, cannot change it
    verdicts: dict[str, object] = field(default_factory=dict)
    # each station's highest power and offer over every reading the windows so far read
    # (``analytics.assemble.PeakWatch``): stations are rated by them, not by the look-back only
    peaks: object = None
    # each connector's sampling interval as the windows so far showed it
    # (``analytics.detectors.timing.ConnectorIntervals``): a short session's connector's
    intervals: object = None

    def follows(self, since_ns: int, until_ns: int) -> bool:
        """Can the window ``[since_ns, until_ns)`` start from this cache? When the cache's
        window ended inside it: at ``since_ns``, or after it when windows overlap by the
        job's settle time. (Not when the partition was judged elsewhere in between.)"""
        return since_ns <= self.until_ns <= until_ns


def list_stations(client: InfluxClient) -> list[str]:
    """Every station with readings or sessions in the database (from the tag index), sorted."""
    query = (
        f"SHOW TAG VALUES FROM {quote_ident(EventType.READING)}, "
        f'{quote_ident(EventType.SESSION_START)} WITH KEY = "station_id"'
    )
    found: set[str] = set()
    for s in client.query(query):
        if "value" in s.columns:
            found.update(str(v) for v in s.columns["value"].tolist())
    return sorted(found)


def station_partitions(stations: Sequence[str], size: int) -> list[tuple[str, ...]]:
    """``stations`` in partitions of at most ``size``, in order."""
    if size < 1:
        raise ValueError(f"partition size must be at least 1, not {size}")
    return [tuple(stations[i : i + size]) for i in range(0, len(stations), size)]


def partition_of(station_id: str, count: int) -> int:
    """The station partition a station belongs to, of ``count``: CRC-32 of its id modulo
    ``count``. It depends on the id alone, so a station never changes partition as others come
    and go (a partition's cursor and lease keep meaning the same stations), and every instance
    computes it alike (unlike Python's ``hash``, salted per process)."""
    if count < 1:
        raise ValueError(f"partition count must be at least 1, not {count}")
    return zlib.crc32(station_id.encode("utf-8")) % count


def partition_stations(
    stations: Sequence[str], partitions: Iterable[int], count: int
) -> tuple[list[str], list[str]]:
    """``stations`` split into those of ``partitions`` (of ``count``), partition by partition
    and sorted within each, and the others, sorted."""
    wanted = set(partitions)
    keyed = sorted((partition_of(s, count), s) for s in stations)
    return [s for p, s in keyed if p in wanted], sorted(s for p, s in keyed if p not in wanted)


def _where_stations(stations: Sequence[str]) -> str:
    return "(" + " OR ".join(f"station_id = {quote_literal(s)}" for s in stations) + ")"


def _select(measurement: str, where: str, since_ns: int, until_ns: int, fields: str = "*") -> str:
    return (
        f"SELECT {fields} FROM {quote_ident(measurement)} WHERE {where} "
        f"AND time >= {since_ns} AND time < {until_ns}"
    )


def _starts_and_stops(where: str, from_ns: int, until_ns: int) -> str:
    """The two statements reading session starts and stops, not grouped (``_by_connector``)."""
    return "; ".join(
        _select(measurement, where, from_ns, until_ns)
        for measurement in (EventType.SESSION_START, EventType.SESSION_STOP)
    )


def _tag(value: object) -> str:
    """A tag's value as a grouped answer gives it (a point without the tag: empty)."""
    return "" if value is None else str(value)


def _by_connector(series: Iterable[Series]) -> list[Series]:
    """Answers not grouped by tags (their tags ``station_id`` and, when read,
    ``connector_id`` as columns) as one series per connector with its tags, as a grouped answer
    gives them (``schema``'s readers take them so), in the same order: InfluxDB pays much less
    for one series than for a few hundred short ones, and so does the client to parse them."""
    out: list[Series] = []
    for s in series:
        if not len(s) or "station_id" not in s.columns:
            continue
        station = s.columns["station_id"].astype(str)
        connector = s.columns.get("connector_id")
        tags = ["station_id"] if connector is None else ["connector_id", "station_id"]
        # InfluxDB orders series by their key: tags by name, then values
        keys = station
        if connector is not None:
            keys = np.char.add(np.char.add(connector.astype(str), ","), station)
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")  # each group's rows stay in time order
        bounds = np.searchsorted(inverse[order], np.arange(first.size + 1))
        columns = {k: v for k, v in s.columns.items() if k not in tags}
        for group, row in enumerate(first.tolist()):
            rows = order[bounds[group] : bounds[group + 1]]
            out.append(
                Series(
                    name=s.name,
                    tags={tag: _tag(s.columns[tag][row]) for tag in tags},
                    columns={name: values[rows] for name, values in columns.items()},
                )
            )
    return out


def read_sessions(
    client: InfluxClient,
    stations: Sequence[str],
    since_ns: int,
    until_ns: int,
    *,
    lookback: Lookback,
) -> SessionEvents:
    """The starts and stops of ``stations`` over the look-back, and which sessions the window
    judges (module docstring): one request."""
    where = _where_stations(stations)
    found = client.query(
        _starts_and_stops(where, since_ns - lookback.session_ns, until_ns)
        + "; "
        + _select(RX_MEASUREMENT, where, since_ns, until_ns, '"session_id", "ts_s"')
    )
    spans = _by_connector(s for s in found if s.name != RX_MEASUREMENT)
    starts = session_starts([s for s in spans if s.name == EventType.SESSION_START])
    stops = session_stops([s for s in spans if s.name == EventType.SESSION_STOP])
    stop_of = {stop.session_id: stop.ts_ns for stop in stops}
    late = _late_sessions([s for s in found if s.name == RX_MEASUREMENT], since_ns, stop_of)
    for session_id in _late_stops([s for s in spans if s.name == EventType.SESSION_STOP], since_ns):
        late.setdefault(session_id, 0)  # judged while it looked open: judged again, stopped
    judged = {s.session_id for s in starts if stop_of.get(s.session_id, until_ns) >= since_ns}
    judged |= {sid for sid, at in stop_of.items() if at >= since_ns}
    judged |= set(late)
    earliest = min([since_ns, *(s.ts_ns for s in starts if s.session_id in judged)])
    return SessionEvents(starts, stops, judged, late, earliest)


def read_spans(
    client: InfluxClient,
    stations: Sequence[str],
    since_ns: int,
    until_ns: int,
    *,
    lookback: Lookback,
) -> SessionEvents:
    """Only the session starts and stops of ``stations`` over the look-back (the kinds judged
    across partitions compare sessions by their spans alone): for stations whose rows another
    instance judges, so nothing of theirs is judged here (``judged`` is empty)."""
    found = _by_connector(
        client.query(
            _starts_and_stops(_where_stations(stations), since_ns - lookback.session_ns, until_ns)
        )
    )
    starts = session_starts([s for s in found if s.name == EventType.SESSION_START])
    stops = session_stops([s for s in found if s.name == EventType.SESSION_STOP])
    return SessionEvents(starts, stops, judged=set(), late={}, earliest_ns=since_ns)


def read_partition(
    client: InfluxClient,
    stations: Sequence[str],
    sessions: SessionEvents,
    since_ns: int,
    until_ns: int,
    *,
    lookback: Lookback,
    cache: ReadingCache | None = None,
) -> tuple[PartitionEvents, ReadingCache]:
    """The events of ``stations`` needed to judge the window's ``sessions`` (``read_sessions``):
    readings, statuses and authorizations (module docstring); and what the next window can
    take from memory. ``cache``, from an earlier window, saves reading again what it holds
    (ignored unless that window ended inside this one: at ``since_ns``, or after it when
    windows overlap by the job's settle time)."""
    where = _where_stations(stations)
    earliest = sessions.earliest_ns
    floor = since_ns - lookback.session_ns
    usable = cache if cache is not None and cache.follows(since_ns, until_ns) else None
    ranges = _ranges(sessions, since_ns, floor, usable)
    columns = _Columns()
    if usable is not None:
        columns.seed(usable.table, usable.keys, usable.session_ids)
    held = usable.open_sessions if usable is not None else set()
    control: list[Event] = [*sessions.starts, *sessions.stops]
    statuses, authorizations = _read_readings(
        client,
        columns,
        where,
        since_ns,
        _unheld_from(sessions, since_ns, held),
        until_ns,
        ranges,
        _statuses_and_authorizations(where, earliest, until_ns, lookback),
    )
    carried = set(ranges) | (set(usable.orphans_from) if usable is not None else set())
    _read_orphans_before(
        client, columns, [k for k in columns.keys if k not in carried], floor, since_ns
    )
    table = columns.table(until_ns)
    readings = columns.columns(table)
    control += _statuses(_in_force(statuses, columns.keys, readings))
    control += authorizations
    control.sort(key=lambda e: e.ts_ns)
    kept = _keep(sessions, columns, table, until_ns, floor)
    return PartitionEvents(control=control, readings=readings), kept


def _read_orphans_before(
    client: InfluxClient,
    columns: _Columns,
    keys: Sequence[tuple[str, int]],
    floor_ns: int,
    since_ns: int,
) -> None:
    """Readings outside sessions from ``floor_ns`` up to the window, for connectors ``keys``
    seen in the window that neither a session in the look-back (``_ranges``) nor the cache
    carries back: a connector no session used in the look-back (an idle one reporting every
    quarter hour, or one a thief charges from) may hold an orphan segment that began before
    the window, and judged from the window's edge its energy would be cut in two. Only a
    window without a cache (the job's first, a partition taken over, ``detect --since``)
    reads this; later ones keep it (``ReadingCache``)."""
    band = RX_BAND_NS
    if not keys or floor_ns >= since_ns - band:
        return
    statements = [
        _select(
            EventType.READING,
            f"station_id = {quote_literal(station_id)} AND connector_id = '{connector_id}'",
            floor_ns,
            since_ns - band,
            _READ_COLUMNS,
        )
        + ' GROUP BY "station_id", "connector_id"'
        for station_id, connector_id in sorted(keys)
    ]
    for s in client.iter_query("; ".join(statements)):
        if "time" in s.columns and len(s):
            columns.add(s, orphans_before=since_ns - band)


def _unheld_from(sessions: SessionEvents, since_ns: int, held: set[str]) -> int:
    """Where readings indexed by receive time are read from: the earliest start of a judged
    session that the cache does not hold whole, else the window's start. A session judged again
    after it left the cache (late readings, or a stop received after the window that judged it
    stopped) gets its wrong-clock readings back this way: stamped far off, they are found by
    their receive time only, which may lie anywhere after its start."""
    judged = sessions.judged - held
    return min([since_ns, *(s.ts_ns for s in sessions.starts if s.session_id in judged)])


def _keep(
    sessions: SessionEvents,
    columns: _Columns,
    table: dict[str, np.ndarray],
    until_ns: int,
    floor_ns: int,
) -> ReadingCache:
    """What the next window needs again (``ReadingCache``): the readings of sessions still
    open (or known by their readings only), and each connector's readings outside sessions
    from its last stop on."""
    known = {s.session_id for s in sessions.starts} | {s.session_id for s in sessions.stops}
    stopped = {s.session_id for s in sessions.stops}
    open_ids = {sid for sid in known if sid not in stopped}
    keep_session = np.array(
        [sid in open_ids or sid not in known for sid in columns.session_ids], dtype=bool
    )
    orphans_from: dict[tuple[str, int], int] = {}
    for stop in sorted(sessions.stops, key=lambda e: e.ts_ns):
        orphans_from[(stop.station_id, stop.connector_id)] = stop.ts_ns
    for key in columns.keys:
        orphans_from[key] = max(orphans_from.get(key, floor_ns), floor_ns)
    session, key_code = table["session"], table["key"]
    has = session >= 0
    keep = np.zeros(session.size, dtype=bool)
    if keep_session.size:
        keep[has] = keep_session[session[has]]
    if columns.keys:
        from_by_code = np.array([orphans_from[key] for key in columns.keys], dtype=np.int64)
        since = from_by_code[key_code[~has]]
        # stamped since the stop, or received since (a wrong clock's reading, stamped far off)
        keep[~has] = (table["point"][~has] >= since) | (table["rx"][~has] * 1000 >= since)
    return ReadingCache(
        until_ns=until_ns,
        open_sessions=open_ids,
        orphans_from=orphans_from,
        table={name: values[keep] for name, values in table.items()},
        keys=columns.keys,
        session_ids=columns.session_ids,
    )


def _late_sessions(series: list[Series], since_ns: int, stop_of: dict[str, int]) -> dict[str, int]:
    """Sessions that stopped before the window and got readings received in it: their last
    judgement did not see them, so they are judged again. (Readings received in the window
    of a session still open or stopping in it are judged with it anyway.)"""
    late: dict[str, int] = {}
    for _tags, row in series_rows(series):
        session_id = text_value(row.get("session_id"))
        if session_id is not None and stop_of.get(session_id, since_ns) < since_ns:
            late[session_id] = late.get(session_id, 0) + 1
    return late


def _late_stops(series: list[Series], since_ns: int) -> list[str]:
    """Sessions whose stop is stamped before the window but was received in it."""
    late = []
    for _tags, row in series_rows(series):
        rx, session_id = row.get(RX_FIELD), text_value(row.get("session_id"))
        if session_id is None or not isinstance(rx, float) or rx != rx:
            continue  # a stop stored without its receive time (before it was recorded)
        if rx * 1000 >= since_ns and int(row["time"]) < since_ns:
            late.append(session_id)
    return late


@dataclass(frozen=True, slots=True)
class _Range:
    """Where a connector's readings are read from: all of them from ``all_from_ns`` (its
    earliest judged session's start), those outside sessions from ``orphans_from_ns`` (the
    orphan segment open then began at the connector's last stop, or ``floor`` when it had
    none)."""

    all_from_ns: int
    orphans_from_ns: int


def _ranges(
    sessions: SessionEvents, since_ns: int, floor_ns: int, cache: ReadingCache | None = None
) -> dict[tuple[str, int], _Range]:
    """Per connector with sessions in the look-back, what to read before the window (readings
    in the window itself are read for every connector of the partition at once); less what
    ``cache`` holds: the readings of sessions it kept whole, orphans from where it kept them."""
    band = RX_BAND_NS
    first: dict[tuple[str, int], int] = {}
    held = cache.open_sessions if cache is not None else set()
    for start in sessions.starts:
        if start.session_id in sessions.judged and start.session_id not in held:
            key = (start.station_id, start.connector_id)
            first[key] = min(first.get(key, since_ns), start.ts_ns)
    events: list[SessionStart | SessionStop] = [*sessions.starts, *sessions.stops]
    events.sort(key=lambda e: e.ts_ns)
    last_before: dict[tuple[str, int], SessionStart | SessionStop] = {}
    keys = {(e.station_id, e.connector_id) for e in events}
    for event in events:
        key = (event.station_id, event.connector_id)
        if event.ts_ns < first.get(key, since_ns) - band:
            last_before[key] = event
    ranges = {}
    for key in keys:
        all_from = min(first.get(key, since_ns), since_ns) - band
        before = last_before.get(key)
        if before is None:
            orphans_from = floor_ns  # no session before: the segment reaches the look-back
        elif isinstance(before, SessionStop):
            orphans_from = before.ts_ns  # the segment open then began at this stop
        else:
            orphans_from = all_from  # a session was open: no segment to carry
        if cache is not None and cache.orphans_from.get(key, since_ns) <= orphans_from:
            orphans_from = all_from  # the cache holds them
        ranges[key] = _Range(all_from, min(orphans_from, all_from))
    return ranges


class _Columns:
    """Readings folded in from series parts, as growing lists of NumPy arrays."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, int]] = []
        self._key_index: dict[tuple[str, int], int] = {}
        self.session_ids: list[str] = []
        self._session_index: dict[str, int] = {}
        self.parts: dict[str, list[np.ndarray]] = {
            name: [] for name in ("point", "rx", "key", "session", *READING_FIELDS)
        }

    def add(
        self, s: Series, *, point_ns: np.ndarray | None = None, orphans_before: int | None = None
    ) -> None:
        """The readings of one series (one connector, by its tags), at ``point_ns`` (their
        times when None); those stamped before ``orphans_before`` only when outside sessions."""
        if not len(s) or "station_id" not in s.tags:
            return
        code = self._code(s.tags["station_id"], s.tags.get("connector_id"))
        keys = np.full(len(s), code, dtype=np.int64)
        before = np.iinfo(np.int64).min if orphans_before is None else orphans_before
        self._append(s, keys, point_ns, s.columns["time"] < before)

    def add_tagged(
        self, s: Series, orphans_before: dict[tuple[str, int], int], default: int
    ) -> None:
        """The readings of an answer not grouped by connector, whose tags are columns; those
        stamped before their connector's ``orphans_before`` (``default`` for connectors not
        in it) only when outside sessions."""
        if not len(s):
            return
        keys = self._codes(s.columns["station_id"], s.columns["connector_id"])
        before = np.array([orphans_before.get(key, default) for key in self.keys], dtype=np.int64)
        self._append(s, keys, None, s.columns["time"] < before[keys])

    def _code(self, station_id: object, connector_id: object) -> int:
        """The code of a connector, registered at first sight."""
        key = (str(station_id), int(str(connector_id or "0") or 0))
        code = self._key_index.get(key)
        if code is None:
            code = self._key_index[key] = len(self.keys)
            self.keys.append(key)
        return code

    def _codes(self, station_id: np.ndarray, connector_id: np.ndarray) -> np.ndarray:
        """The code of each row's connector (``_code``, once per distinct connector)."""
        stations = station_id.astype(str)
        joined = np.char.add(np.char.add(stations, "#"), connector_id.astype(str))
        _, first, inverse = np.unique(joined, return_index=True, return_inverse=True)
        codes = np.array(
            [self._code(stations[i], connector_id[i]) for i in first.tolist()], dtype=np.int64
        )
        return codes[inverse.reshape(-1)]

    def _append(
        self, s: Series, keys: np.ndarray, point_ns: np.ndarray | None, orphans_only: np.ndarray
    ) -> None:
        """Rows of ``s`` with their connector codes ``keys``: every row but those marked
        ``orphans_only`` that belong to a session."""
        n = len(s)
        session = self._session_codes(s.columns.get("session_id"), n)
        keep = ~orphans_only | (session < 0)
        if not keep.any():
            return
        point = np.asarray(s.columns["time"] if point_ns is None else point_ns, dtype=np.int64)
        rx_column = s.columns.get(RX_FIELD)
        rx = np.full(n, -1, dtype=np.int64)
        if rx_column is not None and rx_column.dtype.kind == "f":
            known = ~np.isnan(rx_column)
            rx[known] = rx_column[known].astype(np.int64)
        parts = self.parts
        parts["point"].append(point[keep])
        parts["rx"].append(rx[keep])
        parts["key"].append(keys[keep])
        parts["session"].append(session[keep])
        for name in READING_FIELDS:
            column = s.columns.get(name)
            values = (
                column.astype(np.float64)
                if column is not None and column.dtype.kind == "f"
                else np.full(n, np.nan)
            )
            parts[name].append(values[keep])

    def _session_codes(self, column: np.ndarray | None, n: int) -> np.ndarray:
        codes = np.full(n, -1, dtype=np.int64)
        if column is None or column.dtype.kind != "O":
            return codes  # no reading of this part names a session
        has = np.flatnonzero(column != None)  # noqa: E711 (elementwise, on an object array)
        if not has.size:
            return codes
        names, inverse = np.unique(column[has].astype(str), return_inverse=True)
        index = self._session_index
        for name in names.tolist():
            if name not in index:
                index[name] = len(self.session_ids)
                self.session_ids.append(name)
        mapped = np.array([index[name] for name in names.tolist()], dtype=np.int64)
        codes[has] = mapped[inverse.reshape(-1)]
        return codes

    def seed(
        self, table: dict[str, np.ndarray], keys: list[tuple[str, int]], ids: list[str]
    ) -> None:
        """Start from the readings a cache kept (their codes into ``keys`` and ``ids``)."""
        self.keys = list(keys)
        self._key_index = {key: i for i, key in enumerate(self.keys)}
        self.session_ids = list(ids)
        self._session_index = {sid: i for i, sid in enumerate(self.session_ids)}
        for name, values in table.items():
            self.parts[name].append(values)

    def table(self, until_ns: int) -> dict[str, np.ndarray]:
        """Each reading once (the first of equal points: cached or stamp-indexed before
        receive-indexed), received before ``until_ns``, in order of arrival: a column each."""
        cat = {
            name: np.concatenate(parts) if parts else np.zeros(0)
            for name, parts in self.parts.items()
        }
        point = cat["point"].astype(np.int64)
        key = cat["key"].astype(np.int64)
        rx = cat["rx"].astype(np.int64)
        order = np.lexsort((np.arange(point.size), point, key))
        first = np.ones(order.size, dtype=bool)
        first[1:] = (point[order][1:] != point[order][:-1]) | (key[order][1:] != key[order][:-1])
        pick = order[first]
        pick = pick[(rx[pick] < 0) | (rx[pick] * 1000 < until_ns)]
        # arrival: the receive time; a reading stored without one arrives at its stamp
        arrival = np.where(rx[pick] >= 0, rx[pick], point[pick] // 1000)
        pick = pick[np.argsort(arrival, kind="stable")]
        out: dict[str, np.ndarray] = {"point": point[pick], "rx": rx[pick], "key": key[pick]}
        out["session"] = cat["session"].astype(np.int64)[pick]
        for name in READING_FIELDS:
            out[name] = cat[name].astype(np.float64)[pick]
        return out

    def columns(self, table: dict[str, np.ndarray]) -> ReadingColumns:
        """``table`` as the assembler takes it."""
        rx, point = table["rx"], table["point"]
        return ReadingColumns(
            arrival=np.where(rx >= 0, rx, point // 1000),
            ts_ns=reading_stamp_ns(point),
            key=table["key"],
            keys=self.keys,
            session=table["session"],
            session_ids=self.session_ids,
            values=tuple(table[name] for name in READING_FIELDS),
        )


def _read_readings(
    client: InfluxClient,
    columns: _Columns,
    where: str,
    since_ns: int,
    earliest: int,
    until_ns: int,
    ranges: dict[tuple[str, int], _Range],
    control: str,
) -> tuple[list[Series], list[Event]]:
    """The readings of the window's judged rows: the window for every connector, and before it
    per connector what its ``_Range`` asks (module docstring); then those indexed by receive
    time from ``earliest`` on; then the ``control`` statements (statuses, authorizations),
    whose statuses are returned as series (one per connector) and authorizations as events.
    One request: InfluxDB answers its statements in order, so the
    stamp-indexed come first (``_Columns.table`` keeps the first of equal points)."""
    band = RX_BAND_NS
    by = ' GROUP BY "station_id", "connector_id"'
    fields = _READ_COLUMNS
    # the window of every connector as one series, its tags as columns: InfluxDB and the
    # client then pay one series, not one per connector
    tagged = f'{fields}, "station_id", "connector_id"'
    statements = [_select(EventType.READING, where, since_ns - band, until_ns + band, tagged)]
    for (station_id, connector_id), span in sorted(ranges.items()):
        if span.orphans_from_ns >= since_ns - band:
            continue
        series = f"station_id = {quote_literal(station_id)} AND connector_id = '{connector_id}'"
        statements.append(
            _select(EventType.READING, series, span.orphans_from_ns, since_ns - band, fields) + by
        )
    received = f'{fields}, "ts_s", "ts_frac_ns"'
    statements.append(_select(RX_MEASUREMENT, where, earliest - band, until_ns, received) + by)
    statements.append(control)
    # before the connector's own range, only readings outside sessions are wanted
    all_from = {key: span.all_from_ns for key, span in ranges.items()}
    statuses: list[Series] = []
    authorizations: list[Series] = []
    for s in client.iter_query("; ".join(statements)):
        if "time" not in s.columns or not len(s):
            continue
        if s.name == RX_MEASUREMENT:
            _add_received(columns, s)
        elif s.name == EventType.STATUS:
            statuses.append(s)
        elif s.name == EventType.AUTHORIZE:
            authorizations.append(s)
        elif "station_id" in s.columns:  # the window's, not grouped
            columns.add_tagged(s, all_from, since_ns - band)
        else:
            key = (s.tags.get("station_id", ""), int(s.tags.get("connector_id", "0") or 0))
            columns.add(s, orphans_before=all_from.get(key, since_ns - band))
    return _by_connector(statuses), _authorizations(_by_connector(authorizations))


def _in_force(
    statuses: list[Series], keys: Sequence[tuple[str, int]], readings: ReadingColumns
) -> list[Series]:
    """Of each connector's statuses (a series each, in time order), those that can be in force
    at one of its readings: from the latest at or before its earliest reading on (all of equal
    time: the last to arrive wins). The assembler looks a sample's status up as the latest
    change at or before it, so the statuses dropped are never looked up; they were most of the
    day of statuses read for every window and turned into events. A connector without
    readings keeps its latest statuses only: they still register it and time its latest
    event, as all of them would."""
    first: dict[tuple[str, int], int] = {}
    if readings.ts_ns.size:
        earliest = np.full(len(keys), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(earliest, readings.key, readings.ts_ns)
        first = {key: int(t) for key, t in zip(keys, earliest.tolist(), strict=True)}
    out: list[Series] = []
    for s in statuses:
        times = np.asarray(s.columns["time"], dtype=np.int64)
        if not times.size:
            continue
        key = (s.tags.get("station_id", ""), int(s.tags.get("connector_id", "0") or 0))
        at = int(times[-1])
        if key in first:
            before = int(np.searchsorted(times, first[key], side="right")) - 1
            at = int(times[max(before, 0)])
        begin = int(np.searchsorted(times, at, side="left"))
        out.append(s if begin == 0 else _rows_of(s, np.arange(times.size) >= begin))
    return out


def _add_received(columns: _Columns, s: Series) -> None:
    """Readings indexed by receive time, at their own points (``ts_s``, ``ts_frac_ns``)."""
    if "ts_s" not in s.columns:
        return
    seconds, frac = s.columns["ts_s"], s.columns.get("ts_frac_ns")
    known = ~np.isnan(seconds)
    frac_ns = np.nan_to_num(frac if frac is not None else np.zeros(len(s)), nan=0.0)
    point = np.where(
        known,
        np.nan_to_num(seconds).astype(np.int64) * _NS_PER_S + frac_ns.astype(np.int64),
        np.iinfo(np.int64).min,
    )
    columns.add(_rows_of(s, known), point_ns=point[known])


def _rows_of(s: Series, mask: np.ndarray) -> Series:
    return Series(name=s.name, tags=s.tags, columns={k: v[mask] for k, v in s.columns.items()})


def _statuses_and_authorizations(
    where: str, earliest_ns: int, until_ns: int, lookback: Lookback
) -> str:
    """The statements reading statuses ``lookback.status_ns`` and authorizations
    ``lookback.authorize_ns`` before ``earliest_ns``, up to ``until_ns``."""
    since_ns = earliest_ns - lookback.status_ns
    statuses = _select(
        EventType.STATUS,
        where,
        since_ns,
        until_ns,
        '"status", "error_code", "station_id", "connector_id"',
    )
    authorizations = _select(
        EventType.AUTHORIZE,
        where,
        earliest_ns - lookback.authorize_ns,
        until_ns,
        '"id_pseudonym", "result", "station_id"',
    )
    return f"{statuses}; {authorizations}"  # not grouped: ``_by_connector``


def _statuses(series: list[Series]) -> list[Event]:
    out: list[Event] = []
    for tags, row in series_rows(series):
        try:
            status = ChargePointStatus(str(row.get("status")))
            error = ChargePointErrorCode(str(row.get("error_code") or "NoError"))
        except ValueError:
            continue  # written by something else: not ours to guess
        out.append(
            StatusChange(
                int(row["time"]), tags["station_id"], int(tags["connector_id"]), status, error
            )
        )
    return out


def _authorizations(series: list[Series]) -> list[Event]:
    out: list[Event] = []
    for tags, row in series_rows(series):
        pseudonym = text_value(row.get("id_pseudonym"))
        try:
            result = AuthorizationStatus(str(row.get("result")))
        except ValueError:
            continue
        if pseudonym is not None:
            out.append(Authorize(int(row["time"]), tags["station_id"], pseudonym, result))
    return out
