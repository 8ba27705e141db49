"""The counting behind network figures, on tables of cases: quarter hours in local time across
changes of offset, distributions, peak concurrency, returning users, events within spans."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analytics.network.counts import (
    count_in_spans,
    histogram,
    peak_concurrency,
    returning_users,
)
from analytics.network.hours import LocalQuarters
from chargewatch.events import format_ts, parse_ts

H = 3600 * 1_000_000_000
Q = H // 4


def quarters(since: str, until: str, zone: str) -> LocalQuarters:
    return LocalQuarters(parse_ts(since), parse_ts(until), ZoneInfo(zone))


def test_hours_of_week_in_utc_start_on_monday() -> None:
    q = quarters("2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z", "UTC")  # a Monday
    assert len(q) == 7 * 24 * 4
    assert np.array_equal(np.bincount(q.hour_of_week), np.full(168, 4))
    assert q.hour_of_week[:5].tolist() == [0, 0, 0, 0, 1]
    assert q.hour_of_week[-1] == 167


def test_the_autumn_hour_comes_twice_and_the_spring_hour_not_at_all() -> None:
    # Berlin: 2026-10-25 03:00 CEST becomes 02:00 CET (01:00 UTC); a Sunday
    autumn = quarters("2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "Europe/Berlin")
    hours = [h % 24 for h in autumn.hour_of_week.tolist()[::4]]
    assert hours == [2, 2]  # 02:00 CEST, then 02:00 CET
    assert [format_ts(int(t)) for t in np.unique(autumn.hour_start_ns)] == [
        "2026-10-25T00:00:00.000Z",
        "2026-10-25T01:00:00.000Z",
    ]
    assert set(autumn.hour_of_week.tolist()) == {6 * 24 + 2}
    # 2026-03-29 02:00 CET becomes 03:00 CEST (01:00 UTC)
    spring = quarters("2026-03-29T00:00:00Z", "2026-03-29T02:00:00Z", "Europe/Berlin")
    assert [h % 24 for h in spring.hour_of_week.tolist()[::4]] == [1, 3]


@pytest.mark.parametrize(
    ("zone", "first_local_hour", "first_hour_start"),
    [
        ("Asia/Kolkata", 5, "2026-11-22T23:30:00.000Z"),  # +05:30: 05:30 local
        ("Asia/Kathmandu", 5, "2026-11-22T23:15:00.000Z"),  # +05:45: 05:45 local
        ("America/St_Johns", 20, "2026-11-22T23:30:00.000Z"),  # -03:30: 20:30 the Sunday
    ],
)
def test_zones_off_the_whole_hour(zone: str, first_local_hour: int, first_hour_start: str) -> None:
    q = quarters("2026-11-23T00:00:00Z", "2026-11-23T02:00:00Z", zone)
    assert q.hour_of_week[0] % 24 == first_local_hour
    assert format_ts(int(q.hour_start_ns[0])) == first_hour_start
    # a local hour never holds quarters of two UTC hours' worth: at most four
    assert np.bincount(np.unique(q.hour_start_ns, return_inverse=True)[1]).max() <= 4


def test_histogram_bins_are_closed_below_and_the_last_is_open() -> None:
    values = np.array([-1.0, 0.0, 14.99, 15.0, 30.0, 1e9, np.nan])
    h = histogram(values, (0.0, 15.0, 30.0), "min")
    assert (h.unit, h.edges, h.counts) == ("min", (0.0, 15.0, 30.0), (3, 1, 2))


@pytest.mark.parametrize(
    ("spans", "window", "expected"),
    [
        ([], (0, 10), (0, None)),
        ([(0, 5), (5, 10)], (0, 10), (1, 0)),  # one ends as the other starts
        ([(0, 6), (5, 10), (5, 7)], (0, 10), (3, 5)),
        ([(0, 6), (5, 10)], (6, 10), (1, 6)),  # only what falls in the window
        ([(-5, 3), (-4, 2)], (0, 10), (2, 0)),  # open before the window began
    ],
)
def test_peak_concurrency(
    spans: list[tuple[int, int]], window: tuple[int, int], expected: tuple[int, int | None]
) -> None:
    start = np.array([s for s, _ in spans], dtype=np.int64)
    end = np.array([e for _, e in spans], dtype=np.int64)
    assert peak_concurrency(start, end, *window) == expected


def test_returning_users() -> None:
    window = np.array(["a", "b", "a", None, "c", "d"], dtype=object)
    earlier = np.array(["c", "x"], dtype=object)
    assert returning_users(window, earlier) == (4, 2)  # a twice, c seen before
    assert returning_users(np.array([None], dtype=object), earlier) == (0, 0)
    assert returning_users(window, np.array([], dtype=object)) == (4, 1)


def test_count_in_spans_keeps_groups_apart_and_ends_inclusive() -> None:
    t0 = 1_800_000_000_000_000_000
    counts = count_in_spans(
        event_group=np.array([0, 0, 1, 1], dtype=np.int64),
        event_ns=np.array([t0, t0 + 10, t0 + 5, t0 + 50], dtype=np.int64),
        span_group=np.array([0, 1, 1, 2], dtype=np.int64),
        lo_ns=np.array([t0, t0, t0 + 6, t0], dtype=np.int64),
        hi_ns=np.array([t0 + 10, t0 + 49, t0 + 50, t0 + 99], dtype=np.int64),
    )
    assert counts.tolist() == [2, 1, 1, 0]
