"""A station is rated by the highest power read on it, a DC station reporting only current and
voltage by their product: the file path and the window rate it alike (``PeakWatch``)."""

from __future__ import annotations

import numpy as np

from analytics.assemble import PeakWatch
from chargewatch.events import Reading


def test_a_dc_station_reporting_current_and_voltage_is_rated_by_their_product() -> None:
    # 100 A at 400 V is 40 kW, more than any AC connector: a DC station's power. 16 A at 230 V
    # may be one phase of three, and says nothing of the power (outside fleet seed 1,
    # 120730: the file path rated the station by its derived power, the job by nothing, and
    # only the file path found 6.9 kWh on an Invalid card)
    watch = PeakWatch()
    watch.reading(Reading(1, "DC-1", 1, current_a=100.0, voltage_v=400.0))
    watch.reading(Reading(2, "DC-1", 1, current_a=20.0, voltage_v=400.0))
    watch.reading(Reading(3, "AC-1", 1, current_a=16.0, voltage_v=230.0))
    watch.reading(Reading(4, "AC-1", 1, power_w=3_600.0, current_a=16.0, voltage_v=230.0))
    peaks = watch.peaks()
    power = dict(zip(peaks.station_ids.tolist(), peaks.power_w.tolist(), strict=True))
    assert power == {"DC-1": 40_000.0, "AC-1": 3_600.0}
    assert np.isnan(peaks.offered_w).all()
