"""A station's rating: declared first (station metadata), then the offer, then measured power;
measured power above it raises it, with a note."""

from __future__ import annotations

import numpy as np

from analytics.detectors import MeterJump
from analytics.detectors.ratings import StationRatings, stations_of, with_stations
from chargewatch.sites import StationInfo, StationMetadata
from tests.analytics.detectors.helpers import NOW_NS, Spec, charge, make_batch, with_


def declared(**ratings: float) -> StationMetadata:
    return StationMetadata({s: StationInfo(s, "site", rated_power_w=w) for s, w in ratings.items()})


def no_offer(spec: Spec) -> Spec:
    return with_(spec, offered_w=None)


def test_the_order_declared_offered_measured() -> None:
    batch = make_batch(
        [
            no_offer(charge(power_w=7_400.0, station_id="DECLARED", session_id="a")),
            charge(power_w=7_400.0, offered_w=11_000.0, station_id="OFFERED", session_id="b"),
            no_offer(charge(power_w=7_400.0, station_id="MEASURED", session_id="c")),
        ]
    )
    ratings = StationRatings.learn(with_stations(batch, declared(DECLARED=22_000.0)))
    ids = np.array(["DECLARED", "OFFERED", "MEASURED", "UNKNOWN"], dtype=object)
    np.testing.assert_allclose(ratings.lookup(ids), [22_000.0, 11_000.0, 7_400.0, np.nan])
    assert ratings.note("DECLARED") is None


def test_a_declared_station_never_seen_has_its_rating() -> None:
    batch = make_batch([charge(station_id="OTHER")])
    ratings = StationRatings.learn(with_stations(batch, declared(QUIET=150_000.0)))
    np.testing.assert_allclose(ratings.lookup(np.array(["QUIET"], dtype=object)), [150_000.0])


def test_measured_power_above_a_declared_rating_raises_it_with_a_note() -> None:
    batch = make_batch([no_offer(charge(power_w=22_000.0, station_id="W"))])
    ratings = StationRatings.learn(with_stations(batch, declared(W=11_000.0)))
    np.testing.assert_allclose(ratings.lookup(np.array(["W"], dtype=object)), [22_000.0])
    assert ratings.note("W") == "rated 22.0 kW as measured, above the declared 11.0 kW"


def test_within_the_mains_tolerance_there_is_no_note() -> None:
    batch = make_batch([no_offer(charge(power_w=11_500.0, station_id="W"))])  # 240 V, not 230
    ratings = StationRatings.learn(with_stations(batch, declared(W=11_000.0)))
    np.testing.assert_allclose(ratings.lookup(np.array(["W"], dtype=object)), [11_500.0])
    assert ratings.note("W") is None


def test_without_metadata_nothing_changes() -> None:
    batch = make_batch([charge()])
    assert stations_of(batch) == StationMetadata()
    assert with_stations(batch, None) is batch


def registers_only(power_w: float, **meta: object) -> Spec:
    """A session whose station reports the register alone (no power, no offer): an hour at
    ``power_w``, a reading about every 5 min."""
    # stamped to the millisecond (coarse stamps widen what a step may hold)
    t = np.arange(0.0, 3601.0, 300.0) + np.tile([0.0, 0.137, 0.291], 5)[:13]
    energy = 500_000.0 + power_w * t / 3600.0
    return Spec(t_s=list(t), energy_wh=list(np.floor(energy)), **meta)  # type: ignore[arg-type]


def test_a_22_kw_wallbox_that_has_drawn_7_kw_is_no_meter_jump_at_20_kw() -> None:
    """The real-data false alarm: the station's rating was learned as the highest power seen
    (7.4 kW from single-phase cars), so a three-phase car's 20 kW looked like a jumping meter.
    Nothing declared and nothing offered, an AC rating is only a lower bound: the jump is
    bounded by what an AC connector delivers at most (22 kW)."""
    history = [
        no_offer(charge(power_w=7_400.0, station_id="WB", session_id=f"h{i}")) for i in range(3)
    ]
    fast = registers_only(20_000.0, station_id="WB", session_id="fast")
    batch = make_batch([*history, fast])
    learned = MeterJump().fit(batch)
    assert learned.ratings_.lookup_measured_only(np.array(["WB"], dtype=object)).all()
    assert not learned.score(batch, now_ns=NOW_NS).flagged.any()
    told = MeterJump().fit(with_stations(batch, declared(WB=22_000.0))).score(batch, now_ns=NOW_NS)
    assert not told.flagged.any()


def test_a_declared_7_kw_wallbox_still_jumps_at_20_kw() -> None:
    # declared (or offered), the rating is the connector's: 20 kW from a 7.4 kW box is a jump
    history = [
        no_offer(charge(power_w=7_400.0, station_id="WB", session_id=f"h{i}")) for i in range(3)
    ]
    fast = registers_only(20_000.0, station_id="WB", session_id="fast")
    batch = make_batch([*history, fast])
    told = MeterJump().fit(with_stations(batch, declared(WB=7_400.0)))
    assert not told.ratings_.lookup_measured_only(np.array(["WB"], dtype=object)).any()
    assert told.score(batch, now_ns=NOW_NS).flagged[-1]


def test_a_station_the_history_does_not_know_is_bounded_as_an_ac_connector() -> None:
    # the scheduled job fits on a window's history, which may not hold a station yet: its
    # rating is then the row's own power, no more than measured (sparse fleet seed 72: an
    # 11 kW box judged by a 3.7 kW car's 3.75 kW, meter_mismatch read as meter_jump by the job)
    history = make_batch(
        [no_offer(charge(power_w=7_400.0, station_id="OTHER", session_id=f"h{i}")) for i in (1, 2)]
    )
    detector = MeterJump().fit(history)
    fast = make_batch([registers_only(20_000.0, station_id="NEW", session_id="fast")])
    assert not detector.score(fast, now_ns=NOW_NS).flagged.any()
    faster = make_batch([registers_only(40_000.0, station_id="NEW", session_id="faster")])
    assert detector.score(faster, now_ns=NOW_NS).flagged.all()  # beyond any AC connector


def test_stations_are_rated_by_every_reading_not_only_the_rows_fitted_on() -> None:
    # the detectors are fitted on a sample of the rows when the input spans several batches:
    # a DC station whose sampled sessions never showed its peak is rated by the peaks of every
    # reading (ratings.with_peaks), not by the row's own power (held-out seed 133: 5 false
    # meter_jump flags of detect --since/--until on one station, none of the file path)
    from analytics.assemble import PeakWatch
    from analytics.detectors.ratings import StationPeaks, with_peaks
    from chargewatch.events import Reading

    sample = make_batch([no_offer(charge(power_w=40_000.0, station_id="DC", session_id="s"))])
    watch = PeakWatch()
    watch.reading(Reading(0, "DC", 1, "other", 1_000.0, 150_000.0, None))
    watch.reading(Reading(0, "NEW", 1, "x", 1_000.0, 7_000.0, 11_000.0))
    peaks = watch.peaks()
    assert isinstance(peaks, StationPeaks) and peaks.station_ids.tolist() == ["DC", "NEW"]
    learned = StationRatings.learn(with_peaks(sample, peaks))
    ids = np.array(["DC", "NEW"], dtype=object)
    assert learned.lookup(ids).tolist() == [150_000.0, 11_000.0]
    assert learned.lookup_measured_only(ids).tolist() == [True, False]
    # without them, the sample alone
    assert StationRatings.learn(sample).lookup(ids[:1]).tolist() == [40_000.0]
