"""``concurrent_id_tag``: every overlapping pair of a pseudonym is found, both sessions carry the
flag, and the flag says whether it is a move at one site, two places one card cannot both be at,
or a fleet card (with the score lowered for the first and the last).

Rows are short sessions: one reading a minute at 7.4 kW, from ``start_min`` to ``stop_min``
minutes after the helpers' ``T0``.
"""

from __future__ import annotations

import numpy as np
import pytest

from analytics.batch import SessionBatch
from analytics.detectors import ConcurrentIdTag, identity
from analytics.detectors.base import KindResult
from analytics.detectors.ratings import with_stations
from chargewatch.sites import StationInfo, StationMetadata
from tests.analytics.detectors.helpers import NOW_NS, Spec, charge, make_batch, with_


def session(sid: str, station: str, start_min: float, stop_min: float, user: str = "U1") -> Spec:
    return charge(
        minutes=stop_min - start_min,
        interval_s=60.0,
        session_id=sid,
        station_id=station,
        offset_s=start_min * 60.0,
        id_pseudonym=user,
    )


def minute_session(sid: str, station: str, start_min: int, stop_min: int) -> Spec:
    """``session`` with its start and stop stamped in whole minutes (a session table)."""
    return with_(session(sid, station, start_min, stop_min), stop_s=(stop_min - start_min) * 60.0)


def judge(
    specs: list[Spec], stations: StationMetadata | None = None
) -> tuple[SessionBatch, KindResult]:
    batch = make_batch(specs)
    detector = ConcurrentIdTag().fit(with_stations(batch, stations))
    return batch, detector.score(batch, now_ns=NOW_NS)


def flagged_ids(batch: SessionBatch, result: KindResult) -> set[str]:
    return {str(s) for s in batch.session_id[result.flagged]}


# (case, sessions, flagged session ids)
CASES: list[tuple[str, list[Spec], set[str]]] = [
    (
        # the real-data miss: A overlaps B by 82 min and C by 6 s (not enough); a vectorized
        # write of A's overlap from both partners in one pass kept C's (then under 60 s)
        "an 82 min overlap is not overwritten by a 6 s one",
        [
            session("A", "ST1", 0, 200),
            session("B", "ST2", 100, 182),
            session("C", "ST3", 199.9, 300),
        ],
        {"A", "B"},
    ),
    (
        # W overlaps Y only; W's latest-ending earlier session (X) is at W's own station and the
        # session just before W (Z) ended long before: comparing with those two missed it
        "a partner that is neither the previous session nor the one ending last",
        [
            session("X", "ST1", 0, 500),
            session("Y", "ST2", 10, 100),
            session("Z", "ST3", 20, 30),
            session("W", "ST1", 50, 60),
        ],
        {"X", "Y", "Z", "W"},
    ),
    (
        "three sessions at once at three stations: all three",
        [
            session("A", "ST1", 0, 60),
            session("B", "ST2", 10, 70),
            session("C", "ST3", 20, 80),
        ],
        {"A", "B", "C"},
    ),
    (
        "back to back (touching by a few seconds: two stations' clocks) is normal",
        [session("A", "ST1", 0, 60), session("B", "ST2", 59.9, 120)],
        set(),
    ),
    (
        # a driver moving to the next charger, the first station's stop stamped in whole
        # minutes (an independently written fleet, seed 206, 875618 and 875652: missed while
        # the least overlap was 60 s)
        "an overlap of 54 s counts",
        [session("A", "ST1", 0, 60), session("B", "ST2", 59.1, 120)],
        {"A", "B"},
    ),
    (
        # the earlier session's stop truncated to its minute only hides overlap (an
        # independently written fleet, seed 205: 45 s after a stop stamped 03:54:00)
        "an overlap of 45 s after a stop stamped in whole minutes counts",
        [minute_session("A", "ST1", 0, 60), session("B", "ST2", 59.25, 120)],
        {"A", "B"},
    ),
    (
        "sessions stamped in whole minutes touching by one minute are normal",
        [minute_session("A", "ST1", 0, 60), minute_session("B", "ST2", 59, 120)],
        set(),
    ),
    (
        "the same card one after the other is normal",
        [session("A", "ST1", 0, 60), session("B", "ST2", 90, 120)],
        set(),
    ),
    (
        "two cards at once is normal",
        [session("A", "ST1", 0, 60), session("B", "ST2", 10, 70, user="U2")],
        set(),
    ),
    (
        "two overlapping sessions at one station (two connectors) are not this kind",
        [session("A", "ST1", 0, 60), session("B", "ST1", 10, 70)],
        set(),
    ),
]


@pytest.mark.parametrize(("specs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cases(specs: list[Spec], expected: set[str]) -> None:
    batch, result = judge(specs)
    assert flagged_ids(batch, result) == expected
    assert all(0.0 <= s <= 1.0 for s in result.score[~np.isnan(result.score)])


def test_the_order_of_the_rows_changes_nothing() -> None:
    specs = CASES[1][1]
    batch, result = judge(specs)
    batch_r, result_r = judge(specs[::-1])
    by_id = dict(zip(batch.session_id, result.reason, strict=True))
    by_id_r = dict(zip(batch_r.session_id, result_r.reason, strict=True))
    assert by_id == by_id_r


def test_each_session_names_its_longest_overlap() -> None:
    batch, result = judge(CASES[0][1])
    reason = str(result.reason[list(batch.session_id).index("A")])
    assert "station ST2 (session B)" in reason and "82 min" in reason


SITES = StationMetadata(
    {
        "ST1": StationInfo("ST1", "berlin-mitte", 52.5200, 13.4050, 22_000.0),
        "ST2": StationInfo("ST2", "berlin-mitte", 52.5201, 13.4052, 22_000.0),
        "ST3": StationInfo("ST3", "munich", 48.1372, 11.5756),
        "ST4": StationInfo("ST4", "potsdam", 52.3906, 13.0645),
    }
)


def test_a_short_overlap_at_one_site_is_a_move_with_a_lower_score() -> None:
    specs = [session("A", "ST1", 0, 65), session("B", "ST2", 60, 120)]
    _, plain = judge(specs)
    _, sited = judge(specs, SITES)
    assert sited.flagged.all()  # the contract still counts it
    assert "same site berlin-mitte" in str(sited.reason[0])
    assert "moving to the next charger" in str(sited.reason[0])
    assert (sited.score < plain.score).all()


def test_a_long_overlap_at_one_site_is_not_called_a_move() -> None:
    specs = [session("A", "ST1", 0, 120), session("B", "ST2", 30, 150)]
    _, plain = judge(specs)
    _, sited = judge(specs, SITES)
    assert "same site" in str(sited.reason[0]) and "moving" not in str(sited.reason[0])
    np.testing.assert_allclose(sited.score, plain.score)


def test_places_one_card_cannot_both_be_at() -> None:
    # Berlin to Munich is 504 km; the second start is 30 min after the first: ~1000 km/h
    _, result = judge([session("A", "ST1", 0, 120), session("B", "ST3", 30, 150)], SITES)
    assert result.flagged.all()
    reason = str(result.reason[0])
    assert "504 km away" in reason and "one card cannot be at both" in reason


def test_a_reachable_place_says_so() -> None:
    # Berlin-Mitte to Potsdam is 27 km; 60 min between the starts is a drive
    _, result = judge([session("A", "ST1", 0, 120), session("B", "ST4", 60, 150)], SITES)
    assert result.flagged.all()
    reason = str(result.reason[1])
    assert "another site 27.2 km away" in reason and "reachable" in reason
    assert "cannot" not in reason


def test_without_metadata_the_flag_says_the_sites_are_unknown() -> None:
    _, result = judge([session("A", "ST1", 0, 120), session("B", "ST3", 30, 150)])
    assert "no site known" in str(result.reason[0])


def test_a_fleet_card_is_flagged_with_a_lower_score() -> None:
    specs = [session("A", "ST1", 0, 120), session("B", "ST3", 30, 150)]
    _, plain = judge(specs, SITES)
    fleet = StationMetadata(SITES.stations, frozenset({"U1"}))
    _, marked = judge(specs, fleet)
    assert marked.flagged.all()
    np.testing.assert_allclose(marked.score, plain.score * 0.5)
    assert "marked as a fleet card" in str(marked.reason[0])


def test_many_overlaps_are_counted_in_the_reason() -> None:
    specs = [session("A", "ST1", 0, 300)] + [
        session(f"B{i}", f"ST{i + 2}", 10 + 20 * i, 25 + 20 * i) for i in range(4)
    ]
    _, result = judge(specs)
    assert result.flagged.all()
    assert "4 more" not in str(result.reason[0]) and "3 more sessions" in str(result.reason[0])


def test_pairs_judged_in_blocks_give_the_same_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """One id tag in many overlapping sessions makes pairs by the square of its sessions: they
    are judged a block at a time, with the same result as all at once."""
    rng = np.random.default_rng(7)
    specs = [
        session(
            f"S{i:02d}",
            f"ST{int(rng.integers(6))}",
            start := float(rng.integers(0, 600)),
            start + float(rng.integers(20, 200)),
            user=f"U{int(rng.integers(3))}",
        )
        for i in range(40)
    ]
    _, whole = judge(specs, SITES)
    monkeypatch.setattr(identity, "MAX_PAIRS", 5)
    _, blocks = judge(specs, SITES)
    assert whole.flagged.sum() > 10
    np.testing.assert_array_equal(blocks.flagged, whole.flagged)
    np.testing.assert_allclose(blocks.score, whole.score)
    assert list(blocks.reason) == list(whole.reason)
