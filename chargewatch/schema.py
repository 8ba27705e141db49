"""How events are laid out in InfluxDB (DESIGN.md, InfluxDB).

One measurement per event type, named as the type. Tags are bounded: ``station_id`` and
``connector_id`` only. Unbounded identifiers (``session_id``, ``id_pseudonym``) and free text are
fields, so series cardinality grows with stations, never with sessions or users. Field names are
the event's own keys, so a query reads like the event format.

A point's identity in InfluxDB is (measurement, tags, timestamp): writing the same event twice
overwrites it rather than counting it twice, which makes replays and re-ingests idempotent.
"""

from __future__ import annotations

from chargewatch.events import (
    Authorize,
    Event,
    EventType,
    Reading,
    SessionStart,
    SessionStop,
    StatusChange,
)
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
