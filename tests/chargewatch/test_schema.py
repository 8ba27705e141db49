"""A point per event: what makes two events one InfluxDB point or two, and reading them back."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargewatch.events import (
    AuthorizationStatus,
    Authorize,
    ChargePointStatus,
    Event,
    EventDecoder,
    EventType,
    Reading,
    SessionStart,
    SessionStop,
    StationEvent,
    StationEventKind,
    StatusChange,
    parse_ts,
)
from chargewatch.influx import InfluxClient
from chargewatch.influx.lineprotocol import TIMESTAMP_LIMIT_NS
from chargewatch.schema import (
    READING_FIELDS,
    LineFormatter,
    Lookback,
    content_crc,
    point_time_ns,
    read_events,
    read_station_liveness,
    reading_point_times,
)

MS = 1_000_000
T = parse_ts("2026-11-24T08:15:30.250Z")
decoder = EventDecoder(lambda tag: f"p-{tag}")


def point(line: str) -> tuple[str, int]:
    """(measurement and tags, time): what InfluxDB identifies a point by."""
    head, rest = line.split(" ", 1)
    return head, int(rest.rsplit(" ", 1)[1])


def decoded(**obj: Any) -> Event:
    base = {"ts": "2026-11-24T08:15:30.250Z", "station_id": "S1", "connector_id": 1}
    return decoder.decode({**base, **obj})


reading = {"type": "reading", "session_id": "s-1", "power_w": 7000, "energy_wh": 1500}
authorize = {"type": "authorize", "id_tag": "04AB", "result": "Accepted"}
start = {"type": "session_start", "session_id": "s-1", "id_tag": "04AB"}
stop = {"type": "session_stop", "session_id": "s-1", "meter_stop_wh": 9000}
status = {"type": "status", "status": "Charging"}
boot = {
    "type": "station",
    "event": "boot",
    "vendor": "ABB",
    "firmware": "1.8",
    "ocpp_version": "ocpp1.6",
}
beat = {"type": "station", "event": "heartbeat", "heartbeat_interval_s": 300}

DISTINCT = [  # two events of one series in one millisecond, differing in content
    ("re-sent sample, other power", reading, {**reading, "power_w": 7001}),
    ("one value more", reading, {**reading, "soc_pct": 50}),
    ("no session", reading, {**reading, "session_id": None}),
    ("two cards", authorize, {**authorize, "id_tag": "04AC"}),
    ("two answers", authorize, {**authorize, "result": "Invalid"}),
    ("two sessions", start, {**start, "session_id": "s-2"}),
    ("meter value", stop, {**stop, "meter_stop_wh": 9001}),
    ("reason", stop, {**stop, "reason": "Local"}),
    ("two statuses", status, {**status, "status": "SuspendedEV"}),
    ("error code", status, {**status, "status": "Faulted", "error_code": "GroundFailure"}),
    ("two firmwares", boot, {**boot, "firmware": "1.9"}),
    ("boot reasons", boot, {**boot, "reason": "Watchdog"}),
    ("two intervals", beat, {**beat, "heartbeat_interval_s": 60}),
]
SAME = [  # the same content, however it was sent
    ("twice", reading, reading),
    ("numeric strings", reading, {**reading, "power_w": "7000", "energy_wh": "1500.0"}),
    ("integer and float", reading, {**reading, "power_w": 7000.0}),
    ("minus zero", {**reading, "current_a": 0}, {**reading, "current_a": -0.0}),
    ("unknown keys", authorize, {**authorize, "note": "ignored"}),
    ("status twice", status, {**status, "error_code": "NoError"}),
    ("start, meter as string", {**start, "meter_start_wh": 5}, {**start, "meter_start_wh": "5"}),
    ("interval as string", beat, {**beat, "heartbeat_interval_s": "300.0"}),
]


@pytest.mark.parametrize(("case", "a", "b"), DISTINCT, ids=[c[0] for c in DISTINCT])
def test_events_differing_in_content_are_distinct_points(
    case: str, a: dict[str, Any], b: dict[str, Any]
) -> None:
    first, second = (point(LineFormatter().format(decoded(**e))) for e in (a, b))
    assert first[0] == second[0]  # the same series...
    assert first[1] != second[1]  # ...at two times
    assert first[1] // MS * MS == second[1] // MS * MS == T  # both in the charger's millisecond


@pytest.mark.parametrize(("case", "a", "b"), SAME, ids=[c[0] for c in SAME])
def test_the_same_content_is_one_point(case: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    assert point(LineFormatter().format(decoded(**a))) == point(
        LineFormatter().format(decoded(**b))
    )


def test_within_a_millisecond_events_keep_the_order_a_session_unfolds_in() -> None:
    events: list[dict[str, Any]] = [boot, authorize, start, status, reading, stop]
    times = [point(LineFormatter().format(decoded(**e)))[1] for e in events]
    assert times == sorted(times)
    assert all(T <= t < T + MS for t in times)


@pytest.mark.parametrize("ts", ["2026-11-24T08:15:30.250Z", "2026-11-24T08:15:30.250123Z"])
def test_at_one_instant_a_station_went_came_back_booted_and_was_heard_from(ts: str) -> None:
    order = ["disconnect", "connect", "boot", "heartbeat"]
    times = [
        point(LineFormatter().format(decoded(type="station", event=kind, ts=ts, reason="x")))[1]
        for kind in order
    ]
    assert times == sorted(times)
    assert len(set(times)) == 4
    assert all(parse_ts(ts) <= t < parse_ts(ts) + MS for t in times)


def test_a_station_point_is_tagged_by_station_and_event_with_up_as_a_field() -> None:
    line = LineFormatter().format(decoded(**boot, heartbeat_interval_s=300))
    head, fields, _time = line.split(" ")
    assert head == "station,event=boot,station_id=S1"
    assert fields == (
        'vendor="ABB",firmware="1.8",ocpp_version="ocpp1.6",heartbeat_interval_s=300.0,up=1i'
    )
    bare = LineFormatter().format(decoded(type="station", event="disconnect"))
    assert bare.split(" ")[:2] == ["station,event=disconnect,station_id=S1", "up=0i"]


def test_a_station_line_made_once_is_the_line_made_anew_at_every_stamp() -> None:
    # one formatter keeps a station's line but its time; a fresh one makes it whole each time
    kept = LineFormatter()
    stamps = ["2026-11-24T08:15:30.250Z", "2026-11-24T08:20:30.250123Z", "2026-11-24T08:25:30Z"]
    for ts in stamps:
        for event in (
            decoded(**beat, ts=ts),
            decoded(**boot, ts=ts),
            decoded(**beat, ts=ts, station_id="S2"),
            decoded(**{**beat, "heartbeat_interval_s": 60}, ts=ts),
        ):
            assert kept.format(event) == LineFormatter().format(event)
    times = [point(kept.format(decoded(**beat, ts=ts)))[1] for ts in stamps]
    assert [t // MS for t in times] == [parse_ts(ts) // MS for ts in stamps]


@pytest.mark.parametrize(
    ("ts", "low", "high"),
    [
        ("2026-11-24T08:15:30Z", T - 250 * MS, T - 249 * MS),  # seconds: within the second's ms
        ("2026-11-24T08:15:30.250123Z", T + 123_000, T + 124_000),  # kept to the microsecond
        ("1969-12-31T23:59:59.999Z", -MS, 0),  # before the epoch
    ],
)
def test_the_charger_time_is_kept_to_its_precision(ts: str, low: int, high: int) -> None:
    t = point(LineFormatter().format(decoded(**reading, ts=ts)))[1]
    assert low <= t < high


def test_times_with_nanoseconds_and_at_the_edge_of_the_range() -> None:
    formatter = LineFormatter()
    exact = Reading(T + 7, "S1", 1, None, power_w=1.0)  # read back from InfluxDB: as it is
    assert point(formatter.format(exact))[1] == T + 7
    last_ms = TIMESTAMP_LIMIT_NS // MS * MS
    edge = Reading(last_ms, "S1", 1, None, power_w=1.0)
    assert last_ms <= point(formatter.format(edge))[1] <= TIMESTAMP_LIMIT_NS


values = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))
sessions = st.one_of(st.none(), st.text(min_size=1, max_size=20))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([T, T + 123_000, T + 5, 0, -MS, TIMESTAMP_LIMIT_NS // MS * MS]),
            st.lists(values, min_size=len(READING_FIELDS), max_size=len(READING_FIELDS)),
            sessions,
        ),
        min_size=1,
        max_size=20,
    )
)
def test_the_columnar_point_times_are_the_per_event_ones(
    rows: list[tuple[int, list[float | None], str | None]],
) -> None:
    formatter = LineFormatter()
    expected = [
        point(formatter.format(Reading(ts, "S1", 1, session, *numbers)))[1]
        for ts, numbers, session in rows
    ]
    got = reading_point_times(
        np.array([ts for ts, _, _ in rows], dtype=np.int64),
        np.array([[np.nan if v is None else v for v in n] for _, n, _ in rows], dtype=np.float64),
        [None if s is None else s.encode() for _, _, s in rows],
    )
    assert got.tolist() == expected
    # the per-event reading's unrolled digest is the general one
    assert expected == [
        point_time_ns(ts, EventType.READING, content_crc(numbers, (session,)))
        for ts, numbers, session in rows
    ]


# -- against InfluxDB ----------------------------------------------------------------------


def test_read_events_gives_back_every_event_of_one_millisecond(influx: InfluxClient) -> None:
    sent: list[Event] = [
        Authorize(T, "S1", "p-a", AuthorizationStatus.ACCEPTED),
        Authorize(T, "S1", "p-b", AuthorizationStatus.ACCEPTED),
        SessionStart(T, "S1", 1, "s-1", "p-b", 100.0),
        StatusChange(T, "S1", 1, ChargePointStatus.CHARGING),
        Reading(T, "S1", 1, "s-1", energy_wh=100.0, power_w=7000.0),
        Reading(T, "S1", 1, "s-1", energy_wh=100.0, power_w=7100.0),
        Reading(T, "S1", 1, "s-1", energy_wh=100.0, power_w=7000.0),  # a deliberate duplicate
        SessionStop(T, "S1", 1, "s-1", 100.0, "Local"),
    ]
    formatter = LineFormatter()
    influx.write([formatter.format(event) for event in sent])
    got = read_events(
        influx, T - MS, T + MS, lookback=Lookback(session_ns=MS, status_ns=MS, authorize_ns=MS)
    )
    assert [type(e).__name__ for e in got] == [
        "Authorize",
        "Authorize",
        "SessionStart",
        "StatusChange",
        "Reading",
        "Reading",
        "SessionStop",
    ]
    assert {e.id_pseudonym for e in got if isinstance(e, Authorize)} == {"p-a", "p-b"}
    assert sorted(e.power_w or 0 for e in got if isinstance(e, Reading)) == [7000.0, 7100.0]
    assert all(e.ts_ns // MS * MS == T for e in got)


def test_station_liveness_reads_the_latest_event_interval_and_boot_per_station(
    influx: InfluxClient,
) -> None:
    s = 1_000_000_000
    kind = StationEventKind
    sent = [
        StationEvent(T - 100 * s, "A", kind.BOOT, vendor="ABB", firmware="1.7", reason="old"),
        StationEvent(T, "A", kind.CONNECT, ocpp_version="ocpp1.6", heartbeat_interval_s=300.0),
        StationEvent(T, "A", kind.BOOT, vendor="ABB", model="Terra", firmware="1.8"),
        StationEvent(T + 60 * s, "A", kind.HEARTBEAT, heartbeat_interval_s=60.0),
        StationEvent(T + 90 * s, "A", kind.HEARTBEAT, heartbeat_interval_s=120.0),
        StationEvent(T + 30 * s, "B", kind.CONNECT),
        StationEvent(T + 40 * s, "B", kind.BOOT, heartbeat_interval_s=30.0),
        StationEvent(T + 50 * s, "B", kind.DISCONNECT, reason="connection_lost"),
        StationEvent(T + 50 * s, "C", kind.HEARTBEAT, heartbeat_interval_s=60.0),
        StationEvent(T + 3600 * s, "C", kind.DISCONNECT),  # after the window
        StationEvent(T - 3600 * s, "D", kind.BOOT),  # before it
    ]
    formatter = LineFormatter()
    influx.write([formatter.format(event) for event in sent])
    influx.write([f"station,event=reboot,station_id=E up=1i {T}"])  # not ours: skipped
    got = read_station_liveness(influx, T - 60 * s, T + 600 * s)

    assert sorted(got) == ["A", "B", "C"]
    a, b, c = got["A"], got["B"], got["C"]
    assert (a.last.event, a.last_seen_ns // s, a.connected) == (kind.HEARTBEAT, T // s + 90, True)
    assert a.heartbeat_interval_s == 120.0
    assert a.boot is not None
    assert (a.boot.vendor, a.boot.model, a.boot.firmware) == ("ABB", "Terra", "1.8")
    assert a.boot.ts_ns // MS * MS == T
    assert (b.connected, b.last.reason, b.heartbeat_interval_s) == (False, "connection_lost", 30.0)
    assert b.boot is not None and b.boot.ts_ns // s == T // s + 40
    assert (c.last.event, c.heartbeat_interval_s, c.connected) == (kind.HEARTBEAT, 60.0, True)
