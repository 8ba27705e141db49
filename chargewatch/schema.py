"""How events are laid out in InfluxDB (DESIGN.md, InfluxDB), both ways: written as line
protocol (``LineFormatter``) and read back: as events (``read_events``), and as what each station's
liveness is (``read_station_liveness``).

One measurement per event type, named as the type. Tags are bounded: ``station_id`` and
``connector_id``, and the ``event`` of a ``station`` point. Unbounded identifiers (``session_id``,
``id_pseudonym``) and free text are fields, so series cardinality grows with stations, never with
sessions or users. Field names are the event's own keys, so a query reads like the event format.

``station`` (liveness: boot, connect, disconnect, heartbeat) is tagged ``station_id`` and
``event``. ``event`` is a tag because it has four values (four series per station at most) and
because what liveness asks is by kind: the latest ``boot`` of each station (vendor, firmware),
which with a tag is read from that series alone through the index, where a field would scan
every heartbeat of the window first. The other keys are fields, and so is ``up`` (1, or 0 for a
disconnect): every point needs a field, a bare heartbeat has no other, and ``last(up)`` or
``mean(up)`` per station is what a Grafana state timeline or availability panel draws.

A point per event. InfluxDB identifies a point by (measurement, tags, time) and a second write of
one replaces the first. Chargers send times in seconds or milliseconds, and two events of one
series can share one: a station re-sending a sample with other values, two cards authorized at one
station in the same millisecond. So the digits a time leaves at zero below its millisecond (or
below its microsecond, for a time given to the microsecond) carry the event's identity
(``point_time_ns``): its type's band (station, authorization, start, status, reading, stop: the
order in which a session unfolds, so that within a millisecond an authorization still comes before
the start it opens, a status before the readings it is in force at, and a session's readings
between its start and its stop; a station connects and boots before it does the rest), and within
the band a CRC-32 of the values the point stores (the IEEE-754 bytes of its numbers, the UTF-8 of
its strings). A station's band is split once more by its event, disconnect, connect, boot,
heartbeat: at one instant a station that went and came back (a replaced connection) is seen
last as connected. That is a function of content alone:

- the same event written again (a spool replay, a file loaded twice, a number sent once as a
  numeric string) is the same point, so replays and re-ingests stay idempotent; a duplicate is
  deliberate and harmless;
- two events that differ in any stored value are two points, unless their digests meet in the
  band: 1 in 166,666 per pair of millisecond times (1 in 166 for times given to the microsecond;
  1 in 41,666 and 1 in 41 for two station events of one kind, which share a quarter band);
- the charger's time is kept to the millisecond (microsecond): a reader sees two events of one
  millisecond up to 1 ms apart, which is what was sent.

The band width follows the number of types: a type added (``station`` made them six) moves the
digits of every type, so a file loaded before and again after such a change is two points per
event; drop and reload rather than load again across it.

Values rather than the line's text are digested because the columnar path (``ingest/encode.py``,
polars) and ``LineFormatter`` write some floats differently (``0.00001`` against ``1e-05``): the
values are what InfluxDB stores, and both paths agree on them (``reading_point_times`` is the
columnar twin of ``point_time_ns``). Derived series (``flag``, ``profile``: chargewatch/flags.py,
analytics/profiles.py) keep their own identity, one point per flag or session, rewritten on
purpose when a session is judged again.

Receive times. InfluxDB orders a series by time, and time is the charger's stamp, so the order in
which readings arrived is lost once they are stored, and a reading stamped by a wrong clock (1970,
years ahead) lies where no window looks. So every reading, session start and stop carries
``rx_us``, when it was received (``ReceiveClock``: the wall clock for live traffic, estimated
from the stamps of a file or batch; strictly increasing for each station, so it is also the order
in which a station's events arrived), in microseconds (exact as the float64 InfluxDB's
JSON gives back), outside the content digest (a replay of the same event is the same point); a
stop received after its window was judged has its session judged again. A reading whose stamp
lies more than ``RX_BAND_NS`` from its receive time is written a second time, as a point of
``reading_rx`` stamped at its receive time, holding its values and its own point's time (``ts_s``
and ``ts_frac_ns``): the detection window finds it by when it arrived
(``analytics.read.partition``), so clock faults and readings that arrive late stay visible.
"""

from __future__ import annotations

import itertools
import math
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from chargewatch.events import (
    AuthorizationStatus,
    Authorize,
    ChargePointErrorCode,
    ChargePointStatus,
    Event,
    EventType,
    Reading,
    SessionStart,
    SessionStop,
    StationEvent,
    StationEventKind,
    StatusChange,
)
from chargewatch.influx.lineprotocol import (
    TIMESTAMP_LIMIT_NS,
    check_timestamp,
    escape_key,
    format_point,
    format_series_fields,
    quote_string,
)

if TYPE_CHECKING:  # the client (httpx) is loaded by what talks to InfluxDB, not by the schema
    from chargewatch.influx import InfluxClient, Series

MEASUREMENTS: tuple[str, ...] = tuple(EventType)

# The float fields of a reading, in the order they are written.
READING_FIELDS: tuple[str, ...] = (
    "energy_wh",
    "power_w",
    "power_offered_w",
    "current_a",
    "voltage_v",
    "soc_pct",
    "temperature_c",
)


# -- receive times --------------------------------------------------------------------------

RX_FIELD = "rx_us"  # a reading's receive time, microseconds since the epoch (module docstring)
RX_MEASUREMENT = "reading_rx"  # readings stamped far from their receive time, indexed by it
# A stamp this far from the receive time is not where the window reading by stamp finds it: a
# charger's clock on NTP and the network put stamps within seconds of arrival; a file's receive
# clock (estimated from its own stamps, ``ReceiveClock.stream_us``) strays by up to a minute where
# few stations interleave. Two minutes covers both; a reading further off is indexed by its receive
# time too. The detection job waits as long before judging (its settle time), so a reading that
# arrives after its session was judged always lies outside the band and is found as late data.
RX_BAND_NS = 120 * 1_000_000_000
_RX_MEDIAN_LINES = 101  # readings around one whose median stamp estimates a file's receive time
# Stations whose latest receive time a clock keeps: far more than a network has (10,000 is a
# large one), so only a stream of made-up station ids ever makes it forget.
_RX_STATIONS_KEPT = 1_000_000


class ReceiveClock:
    """Receive times in microseconds, strictly increasing for each station (so they also give
    the order in which each station's events arrived). ``next_us`` reads the wall clock (live
    traffic, strictly increasing across all stations); ``stream_us`` estimates the receive times
    of a chunk of events from a file or batch, in order, from their own stamps: the median stamp
    of the events around each (one station's bad clock among many does not move it), never
    ahead of the wall clock.

    ``stream_us`` keeps time per station, not one clock for everything it was given: a batch
    of one back office's stations that lags another's by an hour is received at its own time,
    not an hour after its stamps (which would index every one of its readings as late, see
    ``RX_BAND_NS``). A station's receive times still never go back, so a station whose readings
    come out of order (a stretch it held back and sent later) has them received late."""

    def __init__(self, wall_ns: Callable[[], int] = time.time_ns) -> None:
        self._wall_ns = wall_ns
        self._last_us = 0  # the latest receive time handed out, any station
        # each station's latest receive time (key None: chunks given without their stations)
        self._station_us: dict[str | None, int] = {}

    def next_us(self) -> int:
        self._last_us = max(self._last_us + 1, self._wall_ns() // 1000)
        return self._last_us

    def stream_us(
        self,
        ts_ns: np.ndarray,
        *,
        stations: tuple[np.ndarray, Sequence[str | None]] | None = None,
        streams: np.ndarray | None = None,
    ) -> np.ndarray:
        """Receive times (int64 microseconds) of events stamped ``ts_ns``, in order of arrival.

        ``stations``: each event's station as a code (int64 array) into the names given beside
        it; None, one stream strictly increasing as a whole. ``streams``: where independent
        streams begin in the chunk (indices; several bodies posted by different clients and
        encoded together): each is estimated from its own stamps alone."""
        n = int(ts_ns.size)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        stamps = np.asarray(ts_ns, dtype=np.int64) // 1000
        codes, names = stations if stations is not None else (np.zeros(n, np.int64), [None])
        codes = np.asarray(codes, dtype=np.int64)
        floors = np.fromiter(  # each station's latest receive time so far, 0: none
            map(self._station_us.get, names, itertools.repeat(0)), dtype=np.int64, count=len(names)
        )
        bounds = [0, *(() if streams is None else (int(s) for s in streams if 0 < s < n)), n]
        estimate = np.empty(n, dtype=np.int64)
        for begin, end in itertools.pairwise(bounds):
            if end > begin:
                known = floors[np.unique(codes[begin:end])]
                known = known[known > 0]
                # before the stream's chunk, its time as it was: the median of its stations'
                # latest receive times (a burst of late readings opening a chunk must not set
                # its own clock); for a stream not seen before, the median of its first stamps
                # (not the first alone, which may be a wrong clock's)
                first = stamps[begin : min(end, begin + _RX_MEDIAN_LINES)]
                before = int(np.median(known if known.size else first))
                estimate[begin:end] = _running_median(stamps[begin:end], before)
        np.minimum(estimate, self._wall_ns() // 1000, out=estimate)
        rx, latest = _rising_by_station(estimate, codes, floors + 1)
        kept = self._station_us
        # a station not in the chunk (latest -1, only ever "no station") keeps what it had
        kept.update(zip(names, np.maximum(latest, floors).tolist(), strict=True))
        if len(kept) > _RX_STATIONS_KEPT:  # bounded: a fleet has fewer stations
            self._station_us = {name: kept.get(name, 0) for name in names}
        self._last_us = max(self._last_us, int(latest.max()))
        return rx

    def current_us(self) -> int:
        """The latest receive time handed out (the wall clock before any)."""
        return self._last_us if self._last_us else self._wall_ns() // 1000


def _running_median(stamps: np.ndarray, before: int) -> np.ndarray:
    """The median of the ``_RX_MEDIAN_LINES`` stamps around each, ``before`` standing in for
    those before the first and the last stamp for those after the last. Each row's own window:
    in a file in time order that is the row's own stamp, however sparse the file (a median
    shared by a block of rows was hours off a row's stamp in a small fleet's week, and moved
    its readings out of their windows)."""
    n = int(stamps.size)
    half = min(_RX_MEDIAN_LINES // 2, n - 1)
    if half == 0:
        return stamps.copy()
    padded = np.concatenate((np.full(half, before), stamps, np.full(half, stamps[-1])))
    windows = np.lib.stride_tricks.sliding_window_view(padded.astype(np.int64), 2 * half + 1)
    # the middle of each odd-sized window; partitioned down the columns of the transposed
    # windows, which NumPy does several times faster than along rows for nearly sorted stamps
    return np.asarray(np.partition(windows.T, half, axis=0)[half], dtype=np.int64)


def _rising_by_station(
    estimate: np.ndarray, codes: np.ndarray, floors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``estimate`` made strictly increasing within each station (rx[i] >= rx[j] + 1 for an
    earlier j of its station) and at least its station's floor: the receive times; and each
    station's last one (-1: not in the chunk)."""
    n = int(estimate.size)
    order = np.argsort(codes, kind="stable")  # by station, in order of arrival within each
    code = codes[order]
    first = np.ones(n, dtype=bool)
    first[1:] = code[1:] != code[:-1]
    starts = np.flatnonzero(first)
    step = np.arange(n, dtype=np.int64) - np.repeat(starts, np.diff(np.append(starts, n)))
    lowered = np.maximum(estimate[order] - step, floors[code])
    # a running maximum within each station: ranks, offset by station, so one accumulate does it
    values, rank = np.unique(lowered, return_inverse=True)
    width = np.int64(values.size)
    keyed = np.maximum.accumulate(code * width + rank.reshape(-1))
    rx = np.empty(n, dtype=np.int64)
    rx[order] = values[keyed % width] + step
    latest = np.full(floors.size, -1, dtype=np.int64)
    last = np.append(starts[1:], n) - 1
    latest[code[last]] = rx[order][last]
    return rx, latest


def out_of_band(ts_ns: int, rx_us: int) -> bool:
    """Is a reading stamped ``ts_ns`` and received at ``rx_us`` outside ``RX_BAND_NS``?"""
    return abs(ts_ns - rx_us * 1000) > RX_BAND_NS


def rx_point_ns(rx_us: int, point_ns: int) -> int:
    """The time of a reading's ``reading_rx`` point: its receive time, with the sub-microsecond
    digits of its own point (two readings received in one microsecond stay two points)."""
    return rx_us * 1000 + point_ns % 1000


def reading_stamp_ns(point_ns: np.ndarray) -> np.ndarray:
    """The charger's stamps of readings read back at their points' times: the identity digits
    ``point_time_ns`` adds below the millisecond (or microsecond) taken off again, so a stamp in
    whole seconds or minutes reads as such (detectors judge time by the stamps' resolution)."""
    p = np.asarray(point_ns, dtype=np.int64)
    band = _BAND[EventType.READING]
    ms_width, us_width = _MS_NS // _BANDS, _US_NS // _BANDS
    sub_ms, sub_us = p % _MS_NS, p % _US_NS
    in_ms = (sub_ms >= band * ms_width) & (sub_ms < (band + 1) * ms_width)
    in_us = (sub_us >= band * us_width) & (sub_us < (band + 1) * us_width)
    return np.asarray(np.where(in_ms, p - sub_ms, np.where(in_us, p - sub_us, p)), dtype=np.int64)


# -- a point per event ----------------------------------------------------------------------

_MS_NS, _US_NS = 1_000_000, 1_000
# Within a millisecond the types keep the order in which a session unfolds (module docstring).
_BAND: dict[EventType, int] = {
    EventType.STATION: 0,
    EventType.AUTHORIZE: 1,
    EventType.SESSION_START: 2,
    EventType.STATUS: 3,
    EventType.READING: 4,
    EventType.SESSION_STOP: 5,
}
# Within the station band, at one instant: gone, then back, then what it says once back.
_STATION_RANK: dict[StationEventKind, int] = {
    StationEventKind.DISCONNECT: 0,
    StationEventKind.CONNECT: 1,
    StationEventKind.BOOT: 2,
    StationEventKind.HEARTBEAT: 3,
}
_BANDS = len(_BAND)
# Station lines kept made but for their time (LineFormatter._station): more than a fleet's
# stations say, bounded against one that says something new every time.
_STATION_PARTS_KEPT = 20_000
# In the digested bytes: an absent number is a NaN (a stored number never is), an absent string is
# 0xFE and strings are separated by 0xFF (neither byte occurs in UTF-8).
_NAN = math.nan
_NO_TEXT, _TEXT_SEPARATOR = b"\xfe", b"\xff"
_pack_reading_values = struct.Struct(f"<{len(READING_FIELDS)}d").pack


def content_crc(numbers: Iterable[float | None], texts: Iterable[str | None]) -> int:
    """CRC-32 of an event's stored values: its numbers (IEEE-754, little-endian; -0.0 as 0.0),
    then its strings (UTF-8)."""
    values = [_NAN if v is None else v + 0.0 for v in numbers]
    packed = struct.pack(f"<{len(values)}d", *values)
    text = _TEXT_SEPARATOR.join(
        _NO_TEXT if t is None else t.encode("utf-8", "surrogatepass") for t in texts
    )
    return zlib.crc32(text, zlib.crc32(packed))


def point_time_ns(
    ts_ns: int, event_type: EventType, crc: int, *, rank: int = 0, ranks: int = 1
) -> int:
    """The time of an event's point: ``ts_ns`` plus, in the digits it leaves at zero below the
    millisecond (else below the microsecond), the type's band and ``crc`` within it (within
    part ``rank`` of ``ranks`` equal parts of the band, for an order inside a type). A time with
    digits below the microsecond (read back from InfluxDB) is written as it is."""
    if ts_ns % _MS_NS == 0:
        width = _MS_NS // _BANDS
    elif ts_ns % _US_NS == 0:
        width = _US_NS // _BANDS
    else:
        return ts_ns
    part = width // ranks
    offset = _BAND[event_type] * width + rank * part + crc % part
    # Never past what InfluxDB stores: only the last millisecond before 2262-04-11 is cramped.
    return min(ts_ns + offset, TIMESTAMP_LIMIT_NS)


def reading_point_times(
    ts_ns: np.ndarray, values: np.ndarray, session_ids: Sequence[bytes | None]
) -> np.ndarray:
    """``point_time_ns`` of many readings at once: ``ts_ns`` (int64), ``values`` of shape
    ``(n, len(READING_FIELDS))`` in that order with NaN where not measured, and the UTF-8 of each
    ``session_id`` (``None``: none). The CRCs run in C, a whole row's numbers at a time."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    numbers = np.asarray(values, dtype=np.float64) + 0.0  # -0.0 becomes 0.0
    numbers[np.isnan(numbers)] = _NAN  # one NaN, whatever bits the absent values had
    numbers = np.ascontiguousarray(numbers, dtype="<f8")  # the bytes content_crc packs
    rows = cast(
        "list[bytes]", numbers.view(np.dtype((np.void, 8 * numbers.shape[1]))).ravel().tolist()
    )
    texts = [_NO_TEXT if s is None else s for s in session_ids]
    crc = np.fromiter(map(zlib.crc32, texts, map(zlib.crc32, rows)), dtype=np.int64, count=ts.size)
    width = np.where(ts % _MS_NS == 0, _MS_NS // _BANDS, _US_NS // _BANDS)
    offset = _BAND[EventType.READING] * width + crc % width
    offset[ts % _US_NS != 0] = 0
    room = np.where(ts > 0, TIMESTAMP_LIMIT_NS - np.maximum(ts, 0), _MS_NS)
    return np.asarray(ts + np.minimum(offset, np.maximum(room, 0)), dtype=np.int64)


class LineFormatter:
    """Formats events as line protocol, caching the escaped tag part of each connector.
    Readings get their receive time from ``clock`` (the wall clock) unless one is given."""

    def __init__(self, clock: ReceiveClock | None = None) -> None:
        self._heads: dict[tuple[str, str, int], str] = {}
        self._stations: dict[tuple[object, ...], tuple[str, int, int]] = {}
        self._clock = clock if clock is not None else ReceiveClock()

    def _head(self, measurement: str, station_id: str, connector_id: int) -> str:
        key = (measurement, station_id, connector_id)
        head = self._heads.get(key)
        if head is None:
            head = f"{measurement},connector_id={connector_id},station_id={escape_key(station_id)}"
            if len(self._heads) > 100_000:  # bounded: a fleet has far fewer connectors
                self._heads.clear()
            self._heads[key] = head
        return head

    def format_lines(self, event: Event, *, rx_us: int | None = None) -> list[str]:
        """``format``, and for a reading stamped outside ``RX_BAND_NS`` of its receive time
        its ``reading_rx`` point too (module docstring)."""
        if not isinstance(event, Reading):
            return [self.format(event, rx_us=rx_us)]
        rx = rx_us if rx_us is not None else self._clock.next_us()
        head, fields, point_ns = self._reading_parts(event, rx)
        line = f"{head} {fields} {point_ns}"
        if not out_of_band(event.ts_ns, rx):
            return [line]
        return [line, rx_line(head[len(EventType.READING) :], fields, point_ns, rx)]

    def format(self, event: Event, *, rx_us: int | None = None) -> str:
        """One line of line protocol for ``event``, at its point's time (``point_time_ns``); a
        reading, a start or a stop carries its receive time ``rx_us`` (the clock's when not
        given: a stop that arrives late makes the job judge its session again)."""
        if isinstance(event, Reading):
            return self._reading(event, rx_us if rx_us is not None else self._clock.next_us())
        if isinstance(event, SessionStart | SessionStop) and rx_us is None:
            rx_us = self._clock.next_us()
        if isinstance(event, SessionStart):
            crc = content_crc((event.meter_start_wh,), (event.session_id, event.id_pseudonym))
            return format_point(
                EventType.SESSION_START,
                {"station_id": event.station_id, "connector_id": str(event.connector_id)},
                {
                    "session_id": event.session_id,
                    "id_pseudonym": event.id_pseudonym,
                    "meter_start_wh": event.meter_start_wh,
                    RX_FIELD: rx_us,
                },
                point_time_ns(event.ts_ns, EventType.SESSION_START, crc),
            )
        if isinstance(event, SessionStop):
            crc = content_crc((event.meter_stop_wh,), (event.session_id, event.reason))
            return format_point(
                EventType.SESSION_STOP,
                {"station_id": event.station_id, "connector_id": str(event.connector_id)},
                {
                    "session_id": event.session_id,
                    "meter_stop_wh": event.meter_stop_wh,
                    "reason": event.reason,
                    RX_FIELD: rx_us,
                },
                point_time_ns(event.ts_ns, EventType.SESSION_STOP, crc),
            )
        if isinstance(event, StatusChange):
            status, error_code = event.status.value, event.error_code.value
            crc = content_crc((), (status, error_code, event.vendor_error_code, event.info))
            return format_point(
                EventType.STATUS,
                {"station_id": event.station_id, "connector_id": str(event.connector_id)},
                {
                    "status": status,
                    "error_code": error_code,
                    "vendor_error_code": event.vendor_error_code,
                    "info": event.info,
                },
                point_time_ns(event.ts_ns, EventType.STATUS, crc),
            )
        if isinstance(event, Authorize):
            crc = content_crc((), (event.id_pseudonym, event.result.value))
            return format_point(
                EventType.AUTHORIZE,
                {"station_id": event.station_id},
                {"id_pseudonym": event.id_pseudonym, "result": event.result.value},
                point_time_ns(event.ts_ns, EventType.AUTHORIZE, crc),
            )
        if isinstance(event, StationEvent):
            return self._station(event)
        raise TypeError(f"not an event: {type(event).__name__}")

    def _station(self, event: StationEvent) -> str:
        # A station repeats one heartbeat all day (16 % of an independent fleet's events): its
        # line but the time is made once (keyed by every field but the stamp).
        content = event[1:]
        parts = self._stations.get(content)
        if parts is None:
            parts = _station_parts(event)
            if len(self._stations) >= _STATION_PARTS_KEPT:
                self._stations.clear()
            self._stations[content] = parts
        series_fields, crc, rank = parts
        point_ns = point_time_ns(
            event.ts_ns, EventType.STATION, crc, rank=rank, ranks=len(_STATION_RANK)
        )
        check_timestamp(point_ns)
        return f"{series_fields} {point_ns}"

    def _reading(self, r: Reading, rx_us: int) -> str:
        head, fields, point_ns = self._reading_parts(r, rx_us)
        return f"{head} {fields} {point_ns}"

    def _reading_parts(self, r: Reading, rx_us: int) -> tuple[str, str, int]:
        """The measurement and tags, the fields and the time of a reading's line."""
        # The hot path of every ingest: formatted by hand rather than through format_point.
        # The measured values are the reading's fields after session_id, in READING_FIELDS order.
        values = r[4:]
        fields = [
            f"{name}={value!r}"
            for name, value in zip(READING_FIELDS, values, strict=True)
            if value is not None
        ]
        if r.session_id is not None:
            fields.append("session_id=" + quote_string(r.session_id))
        fields.append(f"{RX_FIELD}={rx_us}i")
        # content_crc(values, (r.session_id,)), unrolled: half the cost
        numbers = _pack_reading_values(*[_NAN if v is None else v + 0.0 for v in values])
        session = r.session_id
        text = _NO_TEXT if session is None else session.encode("utf-8", "surrogatepass")
        crc = zlib.crc32(text, zlib.crc32(numbers))
        head = self._head(EventType.READING, r.station_id, r.connector_id)
        return head, ",".join(fields), point_time_ns(r.ts_ns, EventType.READING, crc)


def rx_line(tags: str, fields: str, point_ns: int, rx_us: int) -> str:
    """The ``reading_rx`` point of a reading (its line's ``,tag=value`` part, fields and time):
    the same tags and fields, its point's time as ``ts_s`` and ``ts_frac_ns`` (each exact as
    float64), stamped at its receive time."""
    seconds, frac = divmod(point_ns, 1_000_000_000)
    return (
        f"{RX_MEASUREMENT}{tags} {fields},ts_s={seconds}i,ts_frac_ns={frac}i "
        f"{rx_point_ns(rx_us, point_ns)}"
    )


STATION_TEXT_FIELDS: tuple[str, ...] = ("vendor", "model", "firmware", "ocpp_version", "reason")


def _station_parts(event: StationEvent) -> tuple[str, int, int]:
    """A station event's line without its time (measurement, tags and fields), the CRC of its
    content and its rank among station events at one instant: all but its stamp."""
    texts = [getattr(event, name) for name in STATION_TEXT_FIELDS]
    kind = event.event
    fields: dict[str, str | float | int | None] = dict(zip(STATION_TEXT_FIELDS, texts, strict=True))
    fields["heartbeat_interval_s"] = event.heartbeat_interval_s
    fields["up"] = 0 if kind is StationEventKind.DISCONNECT else 1
    series_fields = format_series_fields(
        EventType.STATION, {"station_id": event.station_id, "event": kind.value}, fields
    )
    return series_fields, content_crc((event.heartbeat_interval_s,), texts), _STATION_RANK[kind]


# -- reading back ---------------------------------------------------------------------------


def _select(measurement: str, since_ns: int, until_ns: int, *, group: bool = True) -> str:
    where = f"time >= {since_ns} AND time < {until_ns}"
    by = ' GROUP BY "station_id", "connector_id"' if group else ' GROUP BY "station_id"'
    from chargewatch.influx import quote_ident

    return f"SELECT * FROM {quote_ident(measurement)} WHERE {where}{by}"


def series_rows(series: Iterable[Series]) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """Each row of each series as (tags, {column: value}); NaN and None mean "not measured"."""
    for s in series:
        names = list(s.columns)
        for values in zip(*(s.columns[name].tolist() for name in names), strict=True):
            yield s.tags, dict(zip(names, values, strict=True))


def session_starts(series: Iterable[Series]) -> list[SessionStart]:
    """The ``session_start`` points of ``series`` as events (a point without its session id or
    pseudonym, which ingest never writes, is left out)."""
    out = []
    for tags, row in series_rows(series):
        session_id, pseudonym = (
            text_value(row.get("session_id")),
            text_value(row.get("id_pseudonym")),
        )
        if session_id is not None and pseudonym is not None:
            out.append(
                SessionStart(
                    int(row["time"]),
                    tags["station_id"],
                    int(tags["connector_id"]),
                    session_id,
                    pseudonym,
                    number_value(row.get("meter_start_wh")),
                )
            )
    return out


def session_stops(series: Iterable[Series]) -> list[SessionStop]:
    """The ``session_stop`` points of ``series`` as events."""
    out = []
    for tags, row in series_rows(series):
        session_id = text_value(row.get("session_id"))
        if session_id is not None:
            out.append(
                SessionStop(
                    int(row["time"]),
                    tags["station_id"],
                    int(tags["connector_id"]),
                    session_id,
                    number_value(row.get("meter_stop_wh")),
                    text_value(row.get("reason")),
                )
            )
    return out


def text_value(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def number_value(value: Any) -> float | None:
    return float(value) if isinstance(value, float | int) and value == value else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookback:
    """How far before a window ``read_events`` looks for what its sessions need."""

    session_ns: int  # session starts: no session is expected to last longer
    status_ns: int  # statuses before the earliest start (the status in force at a sample)
    authorize_ns: int  # authorizations before the earliest start that may still open it


def read_events(
    client: InfluxClient, since_ns: int, until_ns: int, *, lookback: Lookback
) -> list[Event]:
    """The events needed to judge the sessions of ``[since, until)``, in time order: the
    sessions that stopped in it or are still open at ``until`` (their starts looked up
    ``lookback.session_ns`` back), their readings from the earliest such start, and the
    statuses and authorizations before that. Times are the points' (``point_time_ns``): an event
    sent in a millisecond comes back in that millisecond."""
    events: list[Event] = []
    starts_from = since_ns - lookback.session_ns
    starts = session_starts(client.query(_select(EventType.SESSION_START, starts_from, until_ns)))
    stops = session_stops(client.query(_select(EventType.SESSION_STOP, starts_from, until_ns)))
    # Readings are read from the earliest start of a session this window judges (one that stops
    # in it or is still open), not from the whole look-back.
    stopped_before = {stop.session_id for stop in stops if stop.ts_ns < since_ns}
    judged = [start.ts_ns for start in starts if start.session_id not in stopped_before]
    earliest = min([since_ns, *judged])
    events += starts
    events += stops
    for tags, row in series_rows(client.query(_select(EventType.READING, earliest, until_ns))):
        values = [number_value(row.get(name)) for name in READING_FIELDS]
        events.append(
            Reading(
                int(row["time"]),
                tags["station_id"],
                int(tags["connector_id"]),
                text_value(row.get("session_id")),
                *values,
            )
        )
    status_from = earliest - lookback.status_ns
    for tags, row in series_rows(client.query(_select(EventType.STATUS, status_from, until_ns))):
        try:
            status = ChargePointStatus(str(row.get("status")))
            error = ChargePointErrorCode(str(row.get("error_code") or "NoError"))
        except ValueError:
            continue  # written by something else: not ours to guess
        events.append(
            StatusChange(
                int(row["time"]), tags["station_id"], int(tags["connector_id"]), status, error
            )
        )
    auth_from = earliest - lookback.authorize_ns
    query = _select(EventType.AUTHORIZE, auth_from, until_ns, group=False)
    for tags, row in series_rows(client.query(query)):
        pseudonym = text_value(row.get("id_pseudonym"))
        try:
            result = AuthorizationStatus(str(row.get("result")))
        except ValueError:
            continue
        if pseudonym is not None:
            events.append(Authorize(int(row["time"]), tags["station_id"], pseudonym, result))
    events.sort(key=lambda e: e.ts_ns)
    return events


# -- station liveness -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StationLiveness:
    """What the ``station`` points of a window say of one station (``read_station_liveness``).

    ``last`` is its latest station event: ``last.ts_ns`` is when it was last heard from,
    ``last.event`` whether it was still connected then (a disconnect's ``reason`` says how it
    went). ``heartbeat_interval_s`` is its latest interval in the window (None: none was; see
    ``read_station_liveness``), ``boot`` its latest boot in the window (vendor, model, firmware,
    OCPP version; None when it booted before the window began).
    """

    station_id: str
    last: StationEvent
    heartbeat_interval_s: float | None
    boot: StationEvent | None

    @property
    def last_seen_ns(self) -> int:
        return self.last.ts_ns

    @property
    def connected(self) -> bool:
        return self.last.event is not StationEventKind.DISCONNECT


def read_station_liveness(
    client: InfluxClient, since_ns: int, until_ns: int
) -> dict[str, StationLiveness]:
    """Each station with a ``station`` point in ``[since, until)``, by id: its latest event,
    latest boot and latest heartbeat interval there (``StationLiveness``; the interval is the
    one of the most recent of its latest event of each kind that carries one: for the gateway's
    events, which all carry it but a disconnect, the latest recorded).

    A station silent for the whole window is not in the answer: take the window at least as
    long as an offline station should be known as one (or compare with the station registry).
    One query: the latest point of each (station, event) series, at most four rows a station
    however many heartbeats the window holds, flattened by a subquery into one result series
    (10,000 series of one row each cost InfluxDB 1.6 and the client twice as much). Times are
    the points' (``point_time_ns``): within a millisecond of the event's.
    """
    from chargewatch.influx import quote_ident

    table = quote_ident(EventType.STATION)
    latest = (
        f"SELECT * FROM {table} WHERE time >= {since_ns} AND time < {until_ns}"
        ' GROUP BY "station_id", "event" ORDER BY time DESC LIMIT 1'
    )
    by_station: dict[str, list[StationEvent]] = {}
    for _tags, row in series_rows(client.query(f"SELECT * FROM ({latest}) ORDER BY time DESC")):
        event = _station_event(row)
        if event is not None:
            by_station.setdefault(event.station_id, []).append(event)
    answer: dict[str, StationLiveness] = {}
    for station_id in sorted(by_station):
        # newest first; at one instant in the order point_time_ns gives the kinds
        events = sorted(by_station[station_id], key=_station_order, reverse=True)
        intervals = (e.heartbeat_interval_s for e in events if e.heartbeat_interval_s is not None)
        answer[station_id] = StationLiveness(
            station_id=station_id,
            last=events[0],
            heartbeat_interval_s=next(intervals, None),
            boot=next((e for e in events if e.event is StationEventKind.BOOT), None),
        )
    return answer


def _station_order(event: StationEvent) -> tuple[int, int]:
    return event.ts_ns, _STATION_RANK[event.event]


def _station_event(row: dict[str, Any]) -> StationEvent | None:
    """A row of the ``station`` measurement, its tags as columns; None when it is not one of
    ours (an unknown event, no station)."""
    try:
        kind = StationEventKind(str(row.get("event")))
    except ValueError:
        return None  # written by something else: not ours to guess
    station_id = text_value(row.get("station_id"))
    if station_id is None:
        return None
    return StationEvent(
        int(row["time"]),
        station_id,
        kind,
        vendor=text_value(row.get("vendor")),
        model=text_value(row.get("model")),
        firmware=text_value(row.get("firmware")),
        ocpp_version=text_value(row.get("ocpp_version")),
        heartbeat_interval_s=number_value(row.get("heartbeat_interval_s")),
        reason=text_value(row.get("reason")),
    )
