"""The detection job's reading cache (``analytics.read.partition.ReadingCache``) against a real
InfluxDB: a window that starts from the cache the window before left sees, for every session it
judges, the same readings as a window read cold from InfluxDB, wrong-clock readings included.

The session under test has a clock fault (four readings stamped a year early: InfluxDB holds them
where no window looks by stamp, so they are found by receive time, ``reading_rx``) and is judged a
second time after it stopped: once for readings that arrive after its stop was judged, once for a
stop that arrives in the stretch two windows share (the job's settle time). It left the cache when
it stopped, so the second judgement must read its wrong-clock readings back from its start.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from analytics.read.partition import (
    PartitionEvents,
    ReadingCache,
    read_partition,
    read_sessions,
)
from analytics.window import WINDOW_LOOKBACK, detect_window
from chargewatch.events import Event, Reading, SessionStart, SessionStop
from chargewatch.influx import InfluxClient
from chargewatch.schema import LineFormatter
from tests.analytics._support import MIN, STATION, at, reading, start, stop

YEAR_NS = 365 * 24 * 60 * MIN
WRONG_CLOCK = (3.0, 3.5, 4.0, 4.5)  # minutes of the readings stamped a year early


def fleet(stop_received: float, tail_received: float | None) -> list[tuple[float, Event]]:
    """One session, 1 to 12.5 minutes, with (minute received, event): a reading every 30 s, four
    of them stamped a year early; its stop received at ``stop_received``; its last two readings at
    ``tail_received`` (on time when None)."""
    events: list[tuple[float, Event]] = [(1.0, start(1.0))]
    for k in range(2, 25):
        minute = k / 2
        r = reading(minute, energy_wh=100.0 * minute, power_w=6000.0)
        if minute in WRONG_CLOCK:
            r = r._replace(ts_ns=r.ts_ns - YEAR_NS)
        late = tail_received is not None and minute >= 11.5
        events.append((tail_received if late and tail_received else minute, r))
    events.append((stop_received, stop(12.5)))
    return events


def ingest(client: InfluxClient, events: list[tuple[float, Event]]) -> None:
    """Write the events with their receive times, as the ingest path does."""
    formatter = LineFormatter()
    lines: list[str] = []
    for received, event in events:
        rx_us = at(received) // 1000
        if isinstance(event, Reading):
            lines += formatter.format_lines(event, rx_us=rx_us)
        else:
            assert isinstance(event, SessionStart | SessionStop)
            lines.append(formatter.format(event, rx_us=rx_us))
    client.write(lines)


def readings_of(events: PartitionEvents, session_id: str) -> list[tuple[int, float]]:
    """A session's readings as read: (stamp, energy), sorted."""
    columns = events.readings
    if session_id not in columns.session_ids:
        return []
    code = list(columns.session_ids).index(session_id)
    rows = np.flatnonzero(columns.session == code)
    energy = columns.values[0]
    return sorted((int(columns.ts_ns[i]), float(energy[i])) for i in rows)


def read(
    client: InfluxClient, since: float, until: float, cache: ReadingCache | None
) -> tuple[PartitionEvents, ReadingCache, set[str]]:
    found = read_sessions(client, (STATION,), at(since), at(until), lookback=WINDOW_LOOKBACK)
    events, kept = read_partition(
        client, (STATION,), found, at(since), at(until), lookback=WINDOW_LOOKBACK, cache=cache
    )
    return events, kept, found.judged


@pytest.mark.parametrize(
    ("windows", "stop_received", "tail_received"),
    [
        # windows end to end; the last two readings arrive 13 minutes late, in the third
        ([(0, 10), (10, 20), (20, 30)], 12.5, 25.0),
        # windows overlapping by the job's settle time; the stop arrives in the overlap of the
        # second and third: judged (stopped) in the second, judged again in the third
        ([(0, 10), (8, 20), (18, 30)], 19.0, None),
    ],
    ids=["late readings", "stop received in the overlap"],
)
def test_a_session_judged_again_after_it_left_the_cache_keeps_its_wrong_clock_readings(
    influx: InfluxClient,
    windows: list[tuple[int, int]],
    stop_received: float,
    tail_received: float | None,
) -> None:
    ingest(influx, fleet(stop_received, tail_received))
    cache: ReadingCache | None = None
    for since, until in windows[:-1]:
        _events, cache, _judged = read(influx, since, until, cache)
    assert cache is not None and "S1" not in cache.open_sessions  # it stopped: it left
    since, until = windows[-1]
    warm, _kept, judged = read(influx, since, until, cache)
    cold, _kept, _judged = read(influx, since, until, None)

    assert "S1" in judged  # judged again
    expected = readings_of(cold, "S1")
    wrong = [at(minute) - YEAR_NS for minute in WRONG_CLOCK]
    assert set(wrong) <= {stamp for stamp, _ in expected}
    assert len(expected) == 23
    assert readings_of(warm, "S1") == expected


def test_the_job_with_its_cache_flags_what_a_window_read_cold_flags(influx: InfluxClient) -> None:
    """Window by window with the cache kept between windows, as the job keeps it, the last
    window (the session judged again) flags what the same window read cold flags: the clock
    fault among it."""
    ingest(influx, fleet(19.0, 25.0))
    caches: dict[tuple[str, ...], ReadingCache] = {}
    for since, until in [(0, 10), (8, 20)]:
        detect_window(influx, at(since), at(until), caches=caches)
        assert caches, "the window left a cache for the next"
    warm, _ = detect_window(influx, at(18), at(30), caches=caches)
    cold, _ = detect_window(influx, at(18), at(30))
    assert ("S1", "clock_fault") in {(f.session_id, f.kind) for f in cold}
    assert {(f.session_id, f.kind) for f in warm} == {(f.session_id, f.kind) for f in cold}


class _Counting(InfluxClient):
    """A real client that counts the lines it writes per measurement."""

    def __init__(self, url: str, database: str) -> None:
        super().__init__(url=url, database=database)
        self.lines: dict[str, int] = {}

    def write(self, lines: Sequence[str] | bytes, *, precision: str = "ns") -> None:
        assert not isinstance(lines, bytes)
        for line in lines:
            name = line.split(",", 1)[0]
            self.lines[name] = self.lines.get(name, 0) + 1
        super().write(lines, precision=precision)


def stored(client: InfluxClient, measurement: str) -> list[tuple[object, ...]]:
    """Every point of ``measurement``: its tags, time and fields, sorted."""
    found = client.query(f'SELECT * FROM "{measurement}" GROUP BY *')
    rows = [
        (tuple(sorted(s.tags.items())), *(s.columns[c][i] for c in sorted(s.columns)))
        for s in found
        for i in range(len(s))
    ]
    return sorted(rows, key=repr)


def test_what_the_job_with_its_cache_stores_is_what_windows_read_cold_store(
    influx: InfluxClient,
) -> None:
    """A 40-minute session judged every 10 minutes: with the cache kept between windows, the
    profile and usage points stored are those of the same windows read cold, though the
    usage pieces of its past quarter hours are not written again at every window."""
    events: list[tuple[float, Event]] = [(1.0, start(1.0))]
    events += [(k / 2, reading(k / 2, energy_wh=50.0 * k, power_w=6000.0)) for k in range(3, 81)]
    events.append((40.5, stop(40.5)))
    cold = _Counting(influx.url, f"{influx.database}_cold")
    warm = _Counting(influx.url, influx.database)
    cold.create_database()
    try:
        ingest(warm, events)
        ingest(cold, events)
        caches: dict[tuple[str, ...], ReadingCache] = {}
        for since in range(0, 50, 10):  # overlapping by 2 minutes, as the job's windows
            detect_window(warm, at(since - 2), at(since + 10), caches=caches)
            detect_window(cold, at(since - 2), at(since + 10))
        for measurement in ("profile", "usage"):
            assert stored(warm, measurement) == stored(cold, measurement), measurement
        assert len(stored(warm, "usage")) == 3  # the quarter hours 0-15, 15-30, 30-45
        assert warm.lines["usage"] < cold.lines["usage"]
    finally:
        cold.query(f'DROP DATABASE "{cold.database}"')
        cold.close()
        warm.close()
