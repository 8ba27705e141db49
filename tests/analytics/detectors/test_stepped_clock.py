"""A clock stepped back mid-session (local time written as UTC, a wrong NTP server) is a
``clock_fault``, and only that: the run of readings it misstamps is set aside whole, up to its
last reading, so no register seems to fall or jump where the run ends."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.detectors import detect, fit_detectors
from tests.analytics.detectors.helpers import NOW_NS, Spec, make_batch


def stepped_back(last_stamp_before_s: float) -> Spec:
    """22 kW for 2000 s, a reading every 10 s; from 1010 s on the clock is about 10 min back,
    so that the reading measured at 1600 s is stamped ``last_stamp_before_s`` before the last
    right stamp (1000 s). Readings arrive in the order they were measured."""
    true = np.arange(0.0, 2001.0, 10.0)
    back = 1600.0 - (1000.0 - last_stamp_before_s)
    stamps = np.where(true > 1000.0, true - back, true)
    order = np.argsort(stamps, kind="stable")  # a Spec lists its samples in time order
    energy = 1_000_000.0 + np.floor(true * 22_000.0 / 3600.0)
    return Spec(
        t_s=list(stamps[order]),
        energy_wh=list(energy[order]),
        power_w=[22_000.0] * true.size,
        offered_w=[22_000.0] * true.size,
        arrival=list(order),
        station_id="AC22",
    )


@pytest.mark.parametrize("last_stamp_before_s", [0.5, 2.8, 4.9, 6.0, 30.0])
def test_a_clock_stepped_back_is_a_clock_fault_not_a_falling_register(
    last_stamp_before_s: float,
) -> None:
    batch = make_batch([stepped_back(last_stamp_before_s)])
    flagged = {
        r.kind: str(r.reason[0])
        for r in detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch))
        if r.flagged[0]
    }
    assert set(flagged) == {"clock_fault"}, flagged
    assert "10 min earlier than readings sent before them" in flagged["clock_fault"]
