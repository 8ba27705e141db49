"""``data_gap`` on an open session: its silence counts up to the data's horizon (the latest
reading of the batch, at most ``now``), so a session whose readings stop while the rest of the
network goes on reporting has a gap, and sessions that fall silent with everything else (the
end of a file or a simulated fleet, an ingest outage) have none."""

from __future__ import annotations

from analytics.assemble import assemble
from analytics.detectors import DataGap
from chargewatch.events import Event
from tests.analytics._support import at, numbered, reading, start


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
