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
]
SAME = [  # the same content, however it was sent
    ("twice", reading, reading),
    ("numeric strings", reading, {**reading, "power_w": "7000", "energy_wh": "1500.0"}),
    ("integer and float", reading, {**reading, "power_w": 7000.0}),
    ("minus zero", {**reading, "current_a": 0}, {**reading, "current_a": -0.0}),
    ("unknown keys", authorize, {**authorize, "note": "ignored"}),
    ("status twice", status, {**status, "error_code": "NoError"}),
    ("start, meter as string", {**start, "meter_start_wh": 5}, {**start, "meter_start_wh": "5"}),
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
    events: list[dict[str, Any]] = [authorize, start, status, reading, stop]
    times = [point(LineFormatter().format(decoded(**e)))[1] for e in events]
    assert times == sorted(times)
    assert all(T <= t < T + MS for t in times)


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
