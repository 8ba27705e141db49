"""Every query the dashboards run, in one table: ``QUERIES``, keyed by ``<dashboard>.<name>``.

A panel, a template variable or an annotation names its query by key; nothing else in
``grafana/`` writes query text. The tests run every entry of the table against a real InfluxDB
(and the API's entries against a served app) with the template variables filled in, and lint
every InfluxQL text (``grafana.checks``).

InfluxQL follows DESIGN.md (InfluxDB): each ``SELECT`` (a subquery's too) bounds time on both ends
(Grafana's ``$timeFilter`` becomes ``time >= <from>ms and time <= <to>ms``), every
``GROUP BY time(...)`` has ``fill(none)``, and only bounded tags are grouped by (``station_id``,
``connector_id``, ``kind``): ``session_id`` is a field, matched in ``WHERE``, never grouped by.

The API's entries are the read routes of CONTRACTS.md section 6 as Grafana's Infinity data
source calls them (relative URLs, prefixed with the data source's URL; the API key is the data
source's secure header). ``root`` and ``columns`` are what the panel expects of the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chargewatch.kinds import AnomalyKind

__all__ = [
    "API_PREFIX",
    "QUERIES",
    "SESSION_TIME",
    "ApiQuery",
    "Column",
    "InfluxQuery",
    "Query",
    "api_queries",
    "influx_queries",
]

API_PREFIX = "/api/v1"
# Session-level points (profile, flag) are stamped with the session's or the anomaly's start,
# which may lie before the window a link opens (an alert links a flag's time, padded): on the
# session dashboard they are looked for two days back (no session lasts longer; see
# analytics.window.SESSION_LOOKBACK_NS), still bounded on both ends and by station and session.
SESSION_TIME = "time >= ${__from}ms - 2d AND time <= ${__to}ms"
_STATION = "\"station_id\" = '$station_id'"
_SESSION = "\"session_id\" = '$session_id'"
# The dashboard's window in the API's terms (RFC 3339, UTC).
_WINDOW = (("since", "${__from:date:iso}"), ("until", "${__to:date:iso}"))
_PAGE = ("limit", "1000")  # the API's largest page; a table shows the newest 1000 rows


@dataclass(frozen=True, slots=True, kw_only=True)
class InfluxQuery:
    """An InfluxQL query and the shape its panel reads.

    ``columns``: the columns of every series returned, in order (``time`` first for a
    ``SELECT``); ``tags``: the tags each series is grouped by; ``guaranteed``: a simulated fleet
    with sessions, flags and a fault returns rows (otherwise empty is a valid answer).
    """

    text: str
    columns: tuple[str, ...]
    tags: tuple[str, ...] = ()
    result_format: Literal["time_series", "table"] = "time_series"
    alias: str | None = None
    guaranteed: bool = True


@dataclass(frozen=True, slots=True)
class Column:
    """A field of the API's answer as Infinity reads it: a selector (dotted path in a row),
    the name the panel shows, and its type."""

    selector: str
    text: str
    type: Literal["string", "number", "timestamp", "boolean"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiQuery:
    """A GET of the read API through Infinity.

    ``path`` is under ``API_PREFIX`` and may hold template variables; ``params`` are sent as
    the query string; ``root`` is the dotted path of the rows in the answer ("" : the answer
    itself); ``single``: the rows are one JSON object, not an array.
    """

    path: str
    params: tuple[tuple[str, str], ...] = ()
    root: str = ""
    columns: tuple[Column, ...]
    single: bool = False
    format: Literal["table", "timeseries"] = "table"
    guaranteed: bool = True

    @property
    def url(self) -> str:
        return API_PREFIX + self.path


Query = InfluxQuery | ApiQuery

_FLAG_COLUMNS = (
    Column("session_id", "Session", "string"),
    Column("station_id", "Station", "string"),
    Column("connector_id", "Connector", "number"),
    Column("kind", "Kind", "string"),
    Column("score", "Score", "number"),
    Column("start", "Start", "timestamp"),
    Column("end", "End", "timestamp"),
    Column("reason", "Evidence", "string"),
)
_STATION_COLUMNS = (
    Column("station_id", "Station", "string"),
    Column("sessions.success_rate", "Success rate", "number"),
    Column("sessions.finished", "Finished sessions", "number"),
    Column("sessions.failed_stall", "Stalled", "number"),
    Column("sessions.failed_meter", "Meter flagged", "number"),
    Column("sessions.energy_wh", "Energy", "number"),
    Column("faults", "Faults", "number"),
    Column("last_seen", "Last seen", "timestamp"),
)
_SESSION_ROW_COLUMNS = (
    Column("session_id", "Session", "string"),
    Column("connector_id", "Connector", "number"),
    Column("start", "Start", "timestamp"),
    Column("stop", "Stop", "timestamp"),
    Column("energy.register_wh", "Energy (register)", "number"),
    Column("billing.confidence", "Billing confidence", "number"),
)
_ALERT_COLUMNS = (
    Column("alertname", "Alert", "string"),
    Column("severity", "Severity", "string"),
    Column("station_id", "Station", "string"),
    Column("starts_at", "Since", "timestamp"),
)

QUERIES: dict[str, Query] = {
    # -- Network overview -----------------------------------------------------------------------
    # Network-wide figures read the ``usage`` pieces (analytics/usage.py: a point per session and
    # quarter hour, written by the detection job), not the raw readings: a day of a large
    # network's readings is tens of millions of points, its pieces a few per session.
    "network.active_sessions": InfluxQuery(
        text='SELECT count(distinct("session_id")) AS "active_sessions" FROM "usage" '
        "WHERE $timeFilter GROUP BY time(15m) fill(none)",
        columns=("time", "active_sessions"),
    ),
    # Mean power per quarter hour: the energy counted in it, times four.
    "network.power_kw": InfluxQuery(
        text='SELECT sum("energy_wh") * 4 / 1000 AS "power_kw" FROM "usage" '
        "WHERE $timeFilter GROUP BY time(15m) fill(none)",
        columns=("time", "power_kw"),
    ),
    # Energy that flowed in the window (the panel's window: today so far).
    "network.energy_kwh": InfluxQuery(
        text='SELECT sum("energy_wh") / 1000 AS "energy_kwh" FROM "usage" WHERE $timeFilter',
        columns=("time", "energy_kwh"),
    ),
    "network.flags_by_station": InfluxQuery(
        text='SELECT count("score") AS "flags" FROM "flag" WHERE $timeFilter GROUP BY "station_id"',
        columns=("time", "flags"),
        tags=("station_id",),
        result_format="table",
    ),
    "network.stations": ApiQuery(
        path="/stations", params=_WINDOW, root="stations", columns=_STATION_COLUMNS
    ),
    # The network's rate: successful / finished sessions that started in the window.
    "network.kpis": ApiQuery(
        path="/kpis",
        params=_WINDOW,
        single=True,
        columns=(
            Column("sessions.success_rate", "Success rate", "number"),
            Column("sessions.finished", "Finished sessions", "number"),
            Column("flagged_share", "Flagged share", "number"),
            Column("time_to_flag.mean_s", "Mean time to flag", "number"),
        ),
    ),
    "network.open_alerts": ApiQuery(
        path="/alerts",
        params=(("state", "active"),),
        root="items",
        columns=_ALERT_COLUMNS,
        guaranteed=False,  # no alert job runs in the test fleet
    ),
    # -- Session drill-down ---------------------------------------------------------------------
    # The station of the session picked by id (profile: one point per session, so the look-up
    # reads few points; readings are then found by station tag, time and session).
    "session.var.station_id": InfluxQuery(
        text=f'SELECT "station_id", "session_id" FROM "profile" WHERE {SESSION_TIME} '
        f"AND {_SESSION}",
        columns=("time", "station_id", "session_id"),
    ),
    "session.power": InfluxQuery(
        text='SELECT "power_w" AS "power", "power_offered_w" AS "offered" FROM "reading" '
        f"WHERE $timeFilter AND {_STATION} AND {_SESSION}",
        columns=("time", "power", "offered"),
    ),
    "session.soc": InfluxQuery(
        text=f'SELECT "soc_pct" FROM "reading" WHERE $timeFilter AND {_STATION} AND {_SESSION}',
        columns=("time", "soc_pct"),
    ),
    "session.segments": InfluxQuery(
        text='SELECT "charging_s", "suspended_ev_s", "suspended_evse_s", "idle_s" '
        f'FROM "profile" WHERE {SESSION_TIME} AND {_STATION} AND {_SESSION}',
        columns=("time", "charging_s", "suspended_ev_s", "suspended_evse_s", "idle_s"),
    ),
    "session.billing_confidence": InfluxQuery(
        text='SELECT "billing_confidence" AS "confidence" '
        f'FROM "profile" WHERE {SESSION_TIME} AND {_STATION} AND {_SESSION}',
        columns=("time", "confidence"),
    ),
    "session.energy": InfluxQuery(
        text='SELECT "energy_register_wh" AS "register", "energy_power_wh" AS "integrated power" '
        f'FROM "profile" WHERE {SESSION_TIME} AND {_STATION} AND {_SESSION}',
        columns=("time", "register", "integrated power"),
    ),
    # Empty when the confidence is 1 (no notes are stored then).
    "session.billing_notes": InfluxQuery(
        text=f'SELECT "billing_notes" FROM "profile" WHERE {SESSION_TIME} '
        f"AND {_STATION} AND {_SESSION}",
        columns=("time", "billing_notes"),
        result_format="table",
        guaranteed=False,
    ),
    # The flags of the session: a table, and the annotations on its time series.
    "session.flags": InfluxQuery(
        text='SELECT "kind", "score", "reason", "end_ns" / 1000000 AS "end_ms" FROM "flag" '
        f"WHERE {SESSION_TIME} AND {_STATION} AND {_SESSION}",
        columns=("time", "kind", "score", "reason", "end_ms"),
        result_format="table",
    ),
    "session.detail": ApiQuery(
        path="/sessions/${session_id}",
        single=True,
        columns=(
            Column("session_id", "Session", "string"),
            Column("station_id", "Station", "string"),
            Column("connector_id", "Connector", "number"),
            Column("start", "Start", "timestamp"),
            Column("stop", "Stop", "timestamp"),
            Column("duration_s", "Duration", "number"),
            Column("energy.register_wh", "Energy (register)", "number"),
            Column("energy.integrated_power_wh", "Energy (integrated power)", "number"),
            Column("billing.confidence", "Billing confidence", "number"),
            Column("taper_onset.offset_s", "Taper onset", "number"),
            Column("readings", "Readings", "number"),
        ),
    ),
    "session.profile": ApiQuery(
        path="/sessions/${session_id}/profile",
        root="points",
        format="timeseries",
        columns=(
            Column("time", "Time", "timestamp"),
            Column("power_w", "Power", "number"),
            Column("power_offered_w", "Offered power", "number"),
            Column("soc_pct", "State of charge", "number"),
            Column("energy_wh", "Energy", "number"),
        ),
    ),
    # -- Station health -------------------------------------------------------------------------
    "station.var.station_id": InfluxQuery(
        text='SHOW TAG VALUES WITH KEY = "station_id" WHERE $timeFilter',
        columns=("key", "value"),
    ),
    "station.status": InfluxQuery(
        text=f'SELECT "status" FROM "status" WHERE $timeFilter AND {_STATION} '
        'GROUP BY "connector_id"',
        columns=("time", "status"),
        tags=("connector_id",),
        alias="connector $tag_connector_id",
    ),
    "station.faults": InfluxQuery(
        text='SELECT "error_code", "status", "vendor_error_code", "info" FROM "status" '
        f"WHERE $timeFilter AND {_STATION} "
        "AND (\"error_code\" != 'NoError' OR \"status\" = 'Faulted') "
        'GROUP BY "connector_id"',
        columns=("time", "error_code", "status", "vendor_error_code", "info"),
        tags=("connector_id",),
        result_format="table",
    ),
    "station.power": InfluxQuery(
        text='SELECT mean("power_w") / 1000 AS "power_kw" FROM "reading" '
        f"WHERE $timeFilter AND {_STATION} "
        'GROUP BY time($__interval), "connector_id" fill(none)',
        columns=("time", "power_kw"),
        tags=("connector_id",),
        alias="connector $tag_connector_id",
    ),
    "station.sessions_started": InfluxQuery(
        text=f'SELECT count("session_id") AS "sessions" FROM "session_start" '
        f"WHERE $timeFilter AND {_STATION}",
        columns=("time", "sessions"),
    ),
    "station.sessions": InfluxQuery(
        text='SELECT "session_id", "energy_register_wh", "duration_s", "billing_confidence", '
        '"duration_s" * 1000 AS "duration_ms" '
        f'FROM "profile" WHERE $timeFilter AND {_STATION} GROUP BY "connector_id"',
        columns=(
            "time",
            "session_id",
            "energy_register_wh",
            "duration_s",
            "billing_confidence",
            "duration_ms",
        ),
        tags=("connector_id",),
        result_format="table",
    ),
    "station.flags": InfluxQuery(
        text='SELECT "kind", "score", "session_id", "reason" FROM "flag" '
        f'WHERE $timeFilter AND {_STATION} GROUP BY "connector_id"',
        columns=("time", "kind", "score", "session_id", "reason"),
        tags=("connector_id",),
        result_format="table",
    ),
    "station.detail": ApiQuery(
        path="/stations/${station_id}",
        params=_WINDOW,
        single=True,
        columns=_STATION_COLUMNS,
    ),
    "station.flagged_sessions": ApiQuery(
        path="/sessions",
        params=(("station_id", "${station_id}"), *_WINDOW, ("flagged", "true"), _PAGE),
        root="items",
        columns=_SESSION_ROW_COLUMNS,
    ),
    "station.alerts": ApiQuery(
        path="/alerts",
        params=(("station_id", "${station_id}"), *_WINDOW),
        root="items",
        columns=_ALERT_COLUMNS,
        guaranteed=False,
    ),
    # -- Usage patterns -------------------------------------------------------------------------
    "usage.energy_by_hour": InfluxQuery(
        text='SELECT sum("energy_wh") / 1000 AS "energy_kwh" FROM "usage" WHERE $timeFilter '
        "GROUP BY time(1h) fill(none)",
        columns=("time", "energy_kwh"),
    ),
    # Connector-hours occupied and charging per hour: the mean number of connectors in use.
    "usage.connectors_in_use": InfluxQuery(
        text='SELECT sum("occupied_s") / 3600 AS "occupied", '
        'sum("charging_s") / 3600 AS "charging" '
        'FROM "usage" WHERE $timeFilter GROUP BY time(1h) fill(none)',
        columns=("time", "occupied", "charging"),
    ),
    # Minutes connectors stayed blocked by full cars.
    "usage.idle_after_full": InfluxQuery(
        text='SELECT sum("idle_after_full_s") / 60 AS "idle_min" FROM "usage" WHERE $timeFilter '
        "GROUP BY time(1h) fill(none)",
        columns=("time", "idle_min"),
    ),
    "usage.idle_by_station": InfluxQuery(
        text='SELECT sum("idle_after_full_s") / 60 AS "idle_min" FROM "usage" WHERE $timeFilter '
        'GROUP BY "station_id"',
        columns=("time", "idle_min"),
        tags=("station_id",),
        result_format="table",
    ),
    "usage.durations": InfluxQuery(
        text='SELECT "duration_s" / 60 AS "duration_min" FROM "profile" WHERE $timeFilter',
        columns=("time", "duration_min"),
    ),
    "usage.energies": InfluxQuery(
        text='SELECT "energy_register_wh" / 1000 AS "energy_kwh" FROM "profile" WHERE $timeFilter',
        columns=("time", "energy_kwh"),
    ),
    "usage.occupancy": ApiQuery(
        path="/usage",
        params=_WINDOW,
        root="hour_of_week",
        columns=(
            Column("day", "Day", "string"),
            Column("hour", "Hour", "number"),
            Column("occupancy", "Occupancy", "number"),
            Column("charging_share", "Charging share", "number"),
            Column("idle_after_full_min", "Idle after full", "number"),
        ),
    ),
    "usage.summary": ApiQuery(
        path="/usage",
        params=_WINDOW,
        single=True,
        columns=(
            Column("peak_concurrent_sessions", "Peak concurrent sessions", "number"),
            Column("returning_share", "Returning users", "number"),
            Column("occupancy", "Occupancy", "number"),
            Column("idle_after_full_min", "Idle after full", "number"),
        ),
    ),
    # -- Detector quality -----------------------------------------------------------------------
    "detectors.flags_by_kind_time": InfluxQuery(
        text='SELECT count("score") AS "flags" FROM "flag" WHERE $timeFilter '
        'GROUP BY time($__interval), "kind" fill(none)',
        columns=("time", "flags"),
        tags=("kind",),
        alias="$tag_kind",
    ),
    "detectors.flags_by_kind": InfluxQuery(
        text='SELECT count("score") AS "flags" FROM "flag" WHERE $timeFilter GROUP BY "kind"',
        columns=("time", "flags"),
        tags=("kind",),
        alias="$tag_kind",
    ),
    "detectors.sessions": InfluxQuery(
        text='SELECT count("session_id") AS "sessions" FROM "profile" WHERE $timeFilter',
        columns=("time", "sessions"),
    ),
    "detectors.flag_scores": InfluxQuery(
        text='SELECT "score" FROM "flag" WHERE $timeFilter GROUP BY "kind"',
        columns=("time", "score"),
        tags=("kind",),
        alias="$tag_kind",
    ),
    # Every kind's score of every session: a column per kind.
    "detectors.scores": ApiQuery(
        path="/scores",
        params=(*_WINDOW, _PAGE),
        root="items",
        columns=tuple(Column(f"scores.{kind}", kind, "number") for kind in AnomalyKind),
    ),
    "detectors.flags": ApiQuery(
        path="/flags", params=(*_WINDOW, _PAGE), root="items", columns=_FLAG_COLUMNS
    ),
    "detectors.alerts": ApiQuery(
        path="/alerts", params=_WINDOW, root="items", columns=_ALERT_COLUMNS, guaranteed=False
    ),
}


def influx_queries() -> dict[str, InfluxQuery]:
    return {key: q for key, q in QUERIES.items() if isinstance(q, InfluxQuery)}


def api_queries() -> dict[str, ApiQuery]:
    return {key: q for key, q in QUERIES.items() if isinstance(q, ApiQuery)}
