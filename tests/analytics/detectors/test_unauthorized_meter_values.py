"""``unauthorized_energy`` from the transaction's own meter values.

A station sampling every 10-15 min may send one reading, or none, in a short session: the
readings alone then hold no register step and no power step, and a refused card's energy
showed only in meterStart and meterStop (an independently written fleet, seed 133 with
``--sparse-sampling 0.5``: 12.5 kWh on an Expired card over 17 min, one reading, missed). Those
count, up to what the connector could deliver over the session; beyond it the rise is a meter
fault, not energy.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from analytics.detectors import UnauthorizedEnergy
from tests.analytics.detectors.helpers import NOW_NS, Spec, make_batch

MIN = 60.0


def _one_reading(result: str, rise_wh: float) -> tuple[bool, str | None]:
    """A 17 min DC session on a card ``result`` (not Accepted) whose single reading shows
    47 kW 5 min in; meterStop is ``rise_wh`` above meterStart."""
    spec = Spec(
        t_s=[5 * MIN],
        energy_wh=[1_000_000.0 + 47_000.0 * 5 / 60],
        power_w=[47_000.0],
        offered_w=[150_000.0],
        status=[1],
        auth_result=result,
        start_s=0.0,
        stop_s=17 * MIN,
    )
    batch = make_batch([spec])
    batch = replace(
        batch,
        meter_start_wh=np.array([1_000_000.0]),
        meter_stop_wh=np.array([1_000_000.0 + rise_wh]),
    )
    got = UnauthorizedEnergy().fit(batch).score(batch, now_ns=NOW_NS)
    reason = got.reason[0]
    return bool(got.flagged[0]), reason if isinstance(reason, str) else None


def test_a_refused_card_with_one_reading_counts_its_meter_values() -> None:
    flagged, reason = _one_reading("Expired", 12_500.0)
    assert flagged, reason
    assert reason and "12.500 kWh delivered in a session whose id tag was Expired" in reason


def test_meter_values_beyond_the_connector_are_no_energy() -> None:
    # 150 kW for 17 min is 42.5 kWh at most: 80 kWh is a meter's jump, meter_jump's
    flagged, reason = _one_reading("Blocked", 80_000.0)
    assert not flagged, reason


def test_a_refused_card_with_no_reading_counts_its_meter_values() -> None:
    # a 12.4 min session on a Blocked card at a station sampling every 15 min: no reading fell
    # inside it, and meterStop is 7.8 kWh above meterStart (an independently written fleet,
    # seed 341 with --sparse-sampling 1.0, TX-0161-241250: "no readings", not scored). The
    # station is rated by its other session (47 kW on connector 1).
    rated = Spec(
        t_s=[0.0, 5 * MIN, 10 * MIN],
        energy_wh=[900_000.0, 900_000.0 + 47_000.0 * 5 / 60, 900_000.0 + 47_000.0 * 10 / 60],
        power_w=[47_000.0] * 3,
        offered_w=[50_000.0] * 3,
        status=[1, 1, 1],
        session_id="OK",
        start_s=0.0,
        stop_s=11 * MIN,
    )
    blocked = Spec(
        t_s=[],
        energy_wh=[],
        power_w=[],
        offered_w=[],
        status=[],
        session_id="REFUSED",
        connector_id=2,
        auth_result="Blocked",
        start_s=60 * MIN,
        stop_s=60 * MIN + 744.0,
    )
    batch = make_batch([rated, blocked])
    stop_ns = batch.stop_ns.copy()
    stop_ns[1] = batch.start_ns[1] + 744 * 1_000_000_000  # the helper stops rows with readings
    batch = replace(
        batch,
        stop_ns=stop_ns,
        meter_start_wh=np.array([900_000.0, 1_333_880.0]),
        meter_stop_wh=np.array([900_000.0 + 47_000.0 * 11 / 60, 1_341_686.0]),
    )
    got = UnauthorizedEnergy().fit(batch).score(batch, now_ns=NOW_NS)
    assert got.flagged[1], got.reason[1]
    assert "7.806 kWh delivered in a session whose id tag was Blocked" in str(got.reason[1])
    assert not got.flagged[0]
