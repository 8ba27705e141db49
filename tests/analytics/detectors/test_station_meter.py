"""Connector 0 is the station itself (OCPP 1.6: its main energy meter, in clock-aligned
MeterValues; 2.0.1: EVSE 0): its register counts every connector at once. A third-party station
with two 11 kW connectors, both charging, sent through ``serve``: its main meter rose 5.5 kWh
every 15 minutes, which meter_jump judged against one connector's 11 kW."""

from __future__ import annotations

import numpy as np

from analytics.assemble import PeakWatch
from analytics.detectors import detect, fit_detectors
from analytics.detectors.ratings import AC_MAX_W, StationRatings, station_connectors, with_peaks
from chargewatch.events import Reading
from tests.analytics.detectors.helpers import NOW_NS, Spec, charge, make_batch

QUARTER_S = 900.0


def main_meter(kw: float, quarters: int = 8) -> Spec:
    """The station's own register, read every quarter hour, rising at ``kw``."""
    t = np.arange(quarters + 1) * QUARTER_S
    return Spec(
        t_s=list(t),
        energy_wh=list(500_000.0 + kw * 1000.0 * t / 3600.0),
        connector_id=0,
        session_id=None,
        start_s=None,
        stop_s=None,
        id_pseudonym=None,
        auth_result=None,
    )


def flagged(specs: list[Spec]) -> set[tuple[int, str]]:
    batch = make_batch(specs)
    results = detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch))
    return {
        (int(batch.connector_id[i]), r.kind) for r in results for i in np.flatnonzero(r.flagged)
    }


def sessions() -> list[Spec]:
    return [
        charge(power_w=11_000.0, minutes=120.0, connector_id=c, session_id=f"S{c}") for c in (1, 2)
    ]


def test_the_main_meter_counts_both_connectors() -> None:
    assert flagged([*sessions(), main_meter(22.0)]) == set()


def test_the_main_meter_rising_beyond_every_connector_together_is_a_jump() -> None:
    assert (0, "meter_jump") in flagged([*sessions(), main_meter(60.0)])


def test_the_main_meter_counts_connectors_the_fitted_history_showed() -> None:
    # a window of the job may hold rows of the connectors busy in it only: fitted on a history
    # that showed connectors 1 and 2, a window with connector 1 and the main meter rising at
    # 22 kW (both charging, connector 2's session not in the window) holds no jump
    history = make_batch([*sessions(), main_meter(22.0)])
    window = make_batch([sessions()[0], main_meter(22.0)])
    detectors = fit_detectors(history)
    results = detect(window, now_ns=NOW_NS, detectors=detectors)
    jump = next(r for r in results if r.kind == "meter_jump")
    assert not jump.flagged.any(), jump.reason
    # ... and judged against itself alone, the window would call it one
    alone = detect(window, now_ns=NOW_NS, detectors=fit_detectors(window))
    assert next(r for r in alone if r.kind == "meter_jump").flagged[1]


def test_peaks_watched_over_every_reading_carry_the_highest_connector() -> None:
    watch = PeakWatch()
    for connector in (0, 3, 1):
        watch.reading(Reading(ts_ns=0, station_id="CP", connector_id=connector, power_w=1_000.0))
    history = with_peaks(make_batch([sessions()[0]]), watch.peaks())
    assert station_connectors(history)["CP"] == 3


def test_the_main_meter_does_not_rate_the_station() -> None:
    # a four-connector 11 kW workplace station whose own meter reads 25 kW while three cars
    # charge: rated at 25 kW it was taken for DC, and a car held to 8 A by an 8 A offer, then
    # drawing 16 A under a 16 A offer, was a "cold battery" (town fleet seed 9, TF-0107-2-002)
    history = make_batch([*sessions(), main_meter(25.3)])
    rated = StationRatings.learn(history).lookup(np.array(["ST1"], dtype=object))
    assert rated[0] < AC_MAX_W, rated
    watch = PeakWatch()
    watch.reading(Reading(ts_ns=0, station_id="CP", connector_id=0, power_w=25_300.0))
    watch.reading(Reading(ts_ns=0, station_id="CP", connector_id=2, power_w=11_000.0))
    assert watch.peaks().power_w.tolist() == [11_000.0]
