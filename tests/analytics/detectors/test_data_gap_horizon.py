"""``data_gap`` on an open session: its silence counts up to the data's horizon (the latest
reading of the batch that two stations reach, or one among fewer than three; at most ``now``),
so a session whose readings stop while the rest of the
network goes on reporting has a gap, and sessions that fall silent with everything else (the
end of a file or a simulated fleet, an ingest outage) have none."""

from __future__ import annotations

from analytics.assemble import assemble
from analytics.detectors import DataGap, detect, fit_detectors
from chargewatch.events import Event
from tests.analytics._support import at, numbered, reading, start, stop


def open_session(minutes: range, session: str, connector: int) -> list[Event]:
    events: list[Event] = [start(minutes.start, session=session, connector=connector)]
    events += [
        reading(m, session, connector, energy_wh=100.0 * m, power_w=6_000.0) for m in minutes
    ]
    return events


def flagged(events: list[Event], now_min: float) -> dict[str, bool]:
    batch = assemble(numbered(events))
    result = DataGap().fit(batch).score(batch, now_ns=at(now_min))
    return {str(sid): bool(f) for sid, f in zip(batch.session_id, result.flagged, strict=True)}


def test_a_session_silent_while_others_report_has_a_gap() -> None:
    events = open_session(range(0, 31), "A", 1) + open_session(range(0, 91), "B", 2)
    assert flagged(events, now_min=91) == {"A": True, "B": False}


def test_sessions_silent_with_everything_else_have_none() -> None:
    events = open_session(range(0, 31), "A", 1) + open_session(range(0, 29), "B", 2)
    assert flagged(events, now_min=600) == {"A": False, "B": False}


def test_an_open_sessions_reason_names_no_stop() -> None:
    events = open_session(range(0, 31), "A", 1) + open_session(range(0, 91), "B", 2)
    batch = assemble(numbered(events))
    result = DataGap().fit(batch).score(batch, now_ns=at(91))
    reasons = dict(zip(batch.session_id.tolist(), result.reason.tolist(), strict=True))
    assert reasons["A"].startswith("no reading for 60 min since the last reading")
    assert "still open" in reasons["A"]
    assert "stop" not in reasons["A"]


def on_station(events: list[Event], station: str) -> list[Event]:
    return [e._replace(station_id=station) for e in events]


def test_a_session_silent_while_two_other_stations_report_has_a_gap() -> None:
    events = on_station(open_session(range(0, 31), "A", 1), "SA")
    events += on_station(open_session(range(0, 91), "B", 1), "SB")
    events += on_station(open_session(range(0, 91), "C", 1), "SC")
    assert flagged(events, now_min=91) == {"A": True, "B": False, "C": False}


def test_one_station_reporting_past_everyone_else_sets_no_horizon() -> None:
    # depot fleet seed 1: one station's readings (after a reboot lost its transaction) go on
    # 25 min past the end of everyone else's data; a station sampling every 5 min was "silent
    # for 30 min since its last reading" before
    events: list[Event] = []
    for n in range(5):
        sampled = range(0, 61, 5)
        events += on_station(open_session(sampled, f"S{n}", 1), f"ST{n}")
    events += on_station(open_session(range(0, 61), "quick", 1), "STQ")
    events += on_station(
        [reading(m, None, 1, energy_wh=10.0 * m, power_w=5_000.0) for m in range(60, 86, 5)],
        "AHEAD",
    )
    result = flagged(events, now_min=86)
    assert not any(result.values()), result


def test_a_clock_stepped_back_makes_no_gap_before_the_stop() -> None:
    # town fleet seed 1, TF-0106-1-001: read every minute, the clock stepped back 12 min at
    # minute 20, the stop stamped right: "no reading for 13 min before the stop" was the
    # clock's (clock_fault says so), not a silence
    events: list[Event] = [start(0.0)]
    events += [reading(m, energy_wh=100.0 * m, power_w=6_000.0) for m in range(0, 20)]
    events += [reading(m - 12.0, energy_wh=100.0 * m, power_w=6_000.0) for m in range(20, 38)]
    events.append(stop(38.5))
    batch = assemble(numbered(events))
    detectors = fit_detectors(batch)
    results = {r.kind: r for r in detect(batch, now_ns=at(40), detectors=detectors)}
    assert results["clock_fault"].flagged[0], results["clock_fault"].reason[0]
    assert not results["data_gap"].flagged[0]
    assert "clock_fault" in str(results["data_gap"].reason[0]), results["data_gap"].reason[0]
