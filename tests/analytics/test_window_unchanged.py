"""An open session whose data did not change since its last verdict is not judged again
(``analytics.window._Verdicts``) unless the clock alone may change it, against a real InfluxDB.

The sessions report every 15 minutes (OCPP's clock-aligned meter values), so most 5-minute
windows of the job bring them nothing: such a window leaves their stored flags as they were;
a reading that arrives late for one of them has it judged again; and a session that falls
silent while another connector keeps reporting still gets its data gap, found by the clock
alone, within an interval of its threshold, as a window judging everything would find it.
"""

from __future__ import annotations

import numpy as np

from analytics.assemble import Assembler
from analytics.detectors import DataGap
from analytics.detectors.prepared import prepared
from analytics.read.partition import ReadingCache
from analytics.window import _holds_until, detect_window
from chargewatch.events import Event
from chargewatch.flags import FLAG_MEASUREMENT, flags_from_series
from chargewatch.influx import InfluxClient
from tests.analytics._support import at, reading, start, stop
from tests.analytics.test_reading_cache import ingest

# windows of 5 minutes that overlap by the job's settle time (2 min), as the job runs them
ENDS = list(range(5, 60, 5))


def sparse(received_late: float | None = None) -> list[tuple[float, Event]]:
    """Session S1 on connector 1: started at minute 0, a reading at its start (1, 2) and then
    every 15 minutes (16, 31, 46), stopped at 50; its register climbs 1.5 kWh a minute under
    6 kW of power (a meter jump, flagged from the second reading on, and so a mismatch: the
    register's energy is the power's 15 times over).
    ``received_late``: a reading stamped 20 arrives then."""
    events: list[tuple[float, Event]] = [(0.0, start(0.0))]
    for minute in (1.0, 2.0, 16.0, 31.0, 46.0):
        events.append((minute, reading(minute, energy_wh=1500.0 * minute, power_w=6000.0)))
    if received_late is not None:
        events.append((received_late, reading(20.0, energy_wh=30_000.0, power_w=6000.0)))
    events.append((50.0, stop(50.0)))
    return events


def stored_flags(client: InfluxClient) -> set[tuple[str | None, str, int, int]]:
    found = client.query(
        f'SELECT * FROM "{FLAG_MEASUREMENT}" GROUP BY "station_id", "connector_id", "kind"'
    )
    return {(f.session_id, f.kind, f.start_ns, f.end_ns) for f in flags_from_series(found)}


def run(client: InfluxClient) -> list[tuple[int, int, set[tuple[str | None, str, int, int]]]]:
    """The job's windows with their cache kept: per window, the sessions it judged, the late
    readings it saw and the flags stored after it."""
    caches: dict[tuple[str, ...], ReadingCache] = {}
    out = []
    for end in ENDS:
        _flags, report = detect_window(client, at(end - 7), at(end), caches=caches)
        out.append((report.sessions, report.late_readings, stored_flags(client)))
    return out


def test_a_session_with_no_new_data_is_not_judged_again_and_keeps_its_flags(
    influx: InfluxClient,
) -> None:
    ingest(influx, sparse())
    windows = run(influx)
    judged = {end: sessions for end, (sessions, _, _) in zip(ENDS, windows, strict=True)}
    # readings at 1, 2, 16, 31, 46 and the stop at 50; a minute apart, DataGap's threshold is
    # its floor, 5 minutes, so the windows to 15 judge it as the silence grows; from 16 on,
    # its interval (the median step) is 7.5, then 14 minutes, its threshold 37.5, then 70
    assert judged == {5: 1, 10: 1, 15: 1, 20: 1, 25: 0, 30: 0, 35: 1, 40: 0, 45: 0, 50: 1, 55: 1}
    for (sessions, _, flags), (_, _, before) in zip(windows[1:], windows, strict=False):
        if not sessions:  # nothing judged, nothing stored or withdrawn: its flag stands
            assert flags == before
            assert {kind for _, kind, _, _ in flags} == {"meter_jump", "meter_mismatch"}
    # the stopped session's final verdict is the one a cold window over it gives
    final, _ = detect_window(influx, at(-2), at(55))
    assert {(f.session_id, f.kind) for f in final} == {(s, k) for s, k, _, _ in windows[-1][2]}


def test_a_session_that_gets_a_late_reading_is_judged_again(influx: InfluxClient) -> None:
    ingest(influx, sparse(received_late=27.0))  # stamped 20, in no window by its stamp
    windows = run(influx)
    sessions, _, _ = windows[ENDS.index(30)]
    assert sessions == 1  # without it, this window leaves the session (the test above)


def test_a_data_gap_that_grows_with_the_clock_alone_is_still_found(
    influx: InfluxClient,
) -> None:
    """S1 reports every 2 minutes to minute 8, then nothing, and never stops; S2, on connector
    2, reports every minute throughout (so the data goes on: a silence of everyone is no gap).
    S1's threshold is 10 minutes (five intervals): the window to 15 leaves it (silent for 7),
    the window to 20 judges it again though nothing of its own arrived, and flags its gap."""
    events: list[tuple[float, Event]] = [(0.0, start(0.0)), (0.0, start(0.0, "S2", 2, "P2"))]
    for minute in range(1, 60):
        events.append((minute, reading(minute, "S2", 2, energy_wh=100.0 * minute, power_w=6e3)))
        if minute <= 8 and minute % 2 == 0:
            events.append((minute, reading(minute, energy_wh=100.0 * minute, power_w=6e3)))
    ingest(influx, events)
    caches: dict[tuple[str, ...], ReadingCache] = {}
    for end in ENDS:
        flags, report = detect_window(influx, at(end - 7), at(end), caches=caches)
        cold, _ = detect_window(influx, at(end - 7), at(end))
        gap = ("S1", "data_gap")
        assert (gap in {(f.session_id, f.kind) for f in flags}) == (
            gap in {(f.session_id, f.kind) for f in cold}
        ), end
        if end == 15:
            assert report.sessions == 1  # S2 only: S1's silence is short of its threshold
        if end == 20:
            assert report.sessions == 2 and gap in {(f.session_id, f.kind) for f in flags}
    assert ("S1", "data_gap") in {(s, k) for s, k, _, _ in stored_flags(influx)}


def test_the_silence_a_verdict_holds_for_is_data_gaps_threshold() -> None:
    """``_holds_until`` computes DataGap's threshold from the stamps without preparing the
    batch: for rows whose clocks ``prepared`` trusts, the same (to a second), and a row it
    would set readings aside in is judged again at the next window."""
    gap = DataGap()
    sessions = {  # (session, minutes of its readings)
        "even": [1.0, 2.0, 16.0],  # two steps: the median is their mean, 7.5 min
        "odd": [0.5, 1.0, 2.0, 4.0],  # 0.5, 1, 2: 1 min, below the floor of 5 min
        "one": [3.0],  # no step: the floor
        "future": [1.0, 2.0, 80.0],  # stamped beyond the trusted future at minute 30
    }
    events: list[Event] = []
    for number, (session, minutes) in enumerate(sessions.items(), start=1):
        events.append(start(0.0, session, number))
        events += [reading(m, session, number, energy_wh=10.0 * m) for m in minutes]
    assembler = Assembler()
    for arrival, event in enumerate(sorted(events, key=lambda e: e.ts_ns), start=1):
        assembler.add(arrival, event)
    batch = next(iter(assembler.finish()))
    now = at(30)
    found = _holds_until(batch, [gap.fit(batch)], now).tolist()
    holds = dict(zip(batch.session_id, found, strict=True))
    prep = prepared(batch, now)
    for row, session in enumerate(batch.session_id):
        if session == "future":
            assert holds[session] == now
            continue
        threshold_s = max(gap.max_missing_intervals * np.nan_to_num(prep.interval_s[row]), 300)
        last = at(sessions[session][-1])
        assert abs(holds[session] - (last + threshold_s * 1e9)) <= 1e9, session
