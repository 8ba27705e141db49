"""``unauthorized_energy`` on orphan segments of stations that stamp whole minutes.

A station stamping whole minutes reports its idle register at 06:15:00 and opens a session at
06:15:00 too (the idle report was sent first). The session's energy is the session's; the idle
readings before and after it are two orphan segments, neither of which saw energy flow.
The assembler once counted a session start "at or before" a reading, so the 06:15 idle reading
joined the segment after the session and its register rise (the session's energy) read as
energy with no session open (seen on simulated seeds 9704 and 9712: an unauthorized_energy and
a meter_mismatch false alarm each). Now a reading at a start's instant belongs to the segment
before it (``analytics/assemble.py``, ``_Ranks`` keeps ties apart).
"""

from __future__ import annotations

from analytics.assemble import assemble
from analytics.detectors import UnauthorizedEnergy
from chargewatch.events import Event
from tests.analytics._support import at, numbered, reading, start, stop

NOW_MIN = 24 * 60


def test_an_idle_reading_at_the_start_minute_is_not_energy_with_no_session() -> None:
    register = 1_000_000.0
    events: list[Event] = [reading(m, None, energy_wh=register, power_w=0.0) for m in (0, 15)]
    events.append(start(15))
    events += [
        reading(m, energy_wh=register + 700.0 * (m - 15), power_w=42_000.0) for m in range(16, 36)
    ]
    events.append(stop(36))
    after = register + 700.0 * 20
    events += [reading(m, None, energy_wh=after, power_w=0.0) for m in (45, 60, 75)]
    batch = assemble(numbered(events))
    detector = UnauthorizedEnergy().fit(batch)
    result = detector.score(batch, now_ns=at(NOW_MIN))
    orphans = [i for i, sid in enumerate(batch.session_id) if sid is None]
    assert not result.flagged[orphans].any(), result.reason[orphans]
