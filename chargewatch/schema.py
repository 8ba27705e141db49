"""How events are laid out in InfluxDB (DESIGN.md, InfluxDB), both ways: written as line
protocol (``LineFormatter``) and read back as events (``read_events``).

One measurement per event type, named as the type. Tags are bounded: ``station_id`` and
``connector_id`` only. Unbounded identifiers (``session_id``, ``id_pseudonym``) and free text are
fields, so series cardinality grows with stations, never with sessions or users. Field names are
the event's own keys, so a query reads like the event format.

A point's identity in InfluxDB is (measurement, tags, timestamp): writing the same event twice
overwrites it rather than counting it twice, which makes replays and re-ingests idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

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
    StatusChange,
)
from chargewatch.influx import InfluxClient, Series, quote_ident
from chargewatch.influx.lineprotocol import escape_key, format_point, quote_string

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


class LineFormatter:
    """Formats events as line protocol, caching the escaped tag part of each connector."""

    def __init__(self) -> None:
        self._heads: dict[tuple[str, str, int], str] = {}

    def _head(self, measurement: str, station_id: str, connector_id: int) -> str:
        key = (measurement, station_id, connector_id)
        head = self._heads.get(key)
        if head is None:
            head = f"{measurement},connector_id={connector_id},station_id={escape_key(station_id)}"
            if len(self._heads) > 100_000:  # bounded: a fleet has far fewer connectors
                self._heads.clear()
            self._heads[key] = head
        return head

    def format(self, event: Event) -> str:
        """One line of line protocol for ``event``."""
        if isinstance(event, Reading):
            return self._reading(event)
        if isinstance(event, SessionStart):
            return format_point(
                EventType.SESSION_START,
                {"station_id": event.station_id, "connector_id": str(event.connector_id)},
                {
                    "session_id": event.session_id,
                    "id_pseudonym": event.id_pseudonym,
                    "meter_start_wh": event.meter_start_wh,
                },
                event.ts_ns,
            )
        if isinstance(event, SessionStop):
            return format_point(
                EventType.SESSION_STOP,
                {"station_id": event.station_id, "connector_id": str(event.connector_id)},
                {
                    "session_id": event.session_id,
                    "meter_stop_wh": event.meter_stop_wh,
                    "reason": event.reason,
                },
                event.ts_ns,
            )
        if isinstance(event, StatusChange):
            return format_point(
                EventType.STATUS,
                {"station_id": event.station_id, "connector_id": str(event.connector_id)},
                {
                    "status": event.status.value,
                    "error_code": event.error_code.value,
                    "vendor_error_code": event.vendor_error_code,
                    "info": event.info,
                },
                event.ts_ns,
            )
        if isinstance(event, Authorize):
            return format_point(
                EventType.AUTHORIZE,
                {"station_id": event.station_id},
                {"id_pseudonym": event.id_pseudonym, "result": event.result.value},
                event.ts_ns,
            )
        raise TypeError(f"not an event: {type(event).__name__}")

    def _reading(self, r: Reading) -> str:
        # The hot path of every ingest: formatted by hand rather than through format_point.
        # The measured values are the reading's fields after session_id, in READING_FIELDS order.
        fields = [
            f"{name}={value!r}"
            for name, value in zip(READING_FIELDS, r[4:], strict=True)
            if value is not None
        ]
        if r.session_id is not None:
            fields.append("session_id=" + quote_string(r.session_id))
        head = self._head(EventType.READING, r.station_id, r.connector_id)
        return f"{head} {','.join(fields)} {r.ts_ns}"


# -- reading back ---------------------------------------------------------------------------


def _select(measurement: str, since_ns: int, until_ns: int, *, group: bool = True) -> str:
    where = f"time >= {since_ns} AND time < {until_ns}"
    by = ' GROUP BY "station_id", "connector_id"' if group else ' GROUP BY "station_id"'
    return f"SELECT * FROM {quote_ident(measurement)} WHERE {where}{by}"


def _rows(series: Iterable[Series]) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """Each row of each series as (tags, {column: value}); NaN and None mean "not measured"."""
    for s in series:
        names = list(s.columns)
        for values in zip(*(s.columns[name].tolist() for name in names), strict=True):
            yield s.tags, dict(zip(names, values, strict=True))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
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
    statuses and authorizations before that."""
    events: list[Event] = []
    starts_from = since_ns - lookback.session_ns
    starts: list[SessionStart] = []
    for tags, row in _rows(client.query(_select(EventType.SESSION_START, starts_from, until_ns))):
        session_id, pseudonym = _text(row.get("session_id")), _text(row.get("id_pseudonym"))
        if session_id is not None and pseudonym is not None:
            starts.append(
                SessionStart(
                    int(row["time"]),
                    tags["station_id"],
                    int(tags["connector_id"]),
                    session_id,
                    pseudonym,
                    _number(row.get("meter_start_wh")),
                )
            )
    stops: list[SessionStop] = []
    for tags, row in _rows(client.query(_select(EventType.SESSION_STOP, starts_from, until_ns))):
        session_id = _text(row.get("session_id"))
        if session_id is not None:
            stops.append(
                SessionStop(
                    int(row["time"]),
                    tags["station_id"],
                    int(tags["connector_id"]),
                    session_id,
                    _number(row.get("meter_stop_wh")),
                    _text(row.get("reason")),
                )
            )
    # Readings are read from the earliest start of a session this window judges (one that stops
    # in it or is still open), not from the whole look-back.
    stopped_before = {stop.session_id for stop in stops if stop.ts_ns < since_ns}
    judged = [start.ts_ns for start in starts if start.session_id not in stopped_before]
    earliest = min([since_ns, *judged])
    events += starts
    events += stops
    for tags, row in _rows(client.query(_select(EventType.READING, earliest, until_ns))):
        values = [_number(row.get(name)) for name in READING_FIELDS]
        events.append(
            Reading(
                int(row["time"]),
                tags["station_id"],
                int(tags["connector_id"]),
                _text(row.get("session_id")),
                *values,
            )
        )
    status_from = earliest - lookback.status_ns
    for tags, row in _rows(client.query(_select(EventType.STATUS, status_from, until_ns))):
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
    for tags, row in _rows(client.query(query)):
        pseudonym = _text(row.get("id_pseudonym"))
        try:
            result = AuthorizationStatus(str(row.get("result")))
        except ValueError:
            continue
        if pseudonym is not None:
            events.append(Authorize(int(row["time"]), tags["station_id"], pseudonym, result))
    events.sort(key=lambda e: e.ts_ns)
    return events
