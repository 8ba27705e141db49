"""meter_jump on the step from the transaction's meterStart to the first reading with a
register (outside fleet seed 20, TRX-0121-00007: a 22 kW wallbox that sends the register in one
reading of three, every 45 min; its first register read 62 kWh past the meterStart 14 min into
the session, the next one was back: a fall was flagged, the leap not). Judged only where the
meterStop shows that the meter values are the register's own."""

from __future__ import annotations

import numpy as np

from analytics.batch import SessionBatch
from analytics.detectors import detect, fit_detectors
from tests.analytics.detectors.helpers import NOW_NS, T0_NS, Spec, make_batch

MIN = 60.0
POWER_W = 11_000.0
START_WH = 51_974_000.0


def register_every_45_min(
    *, leap_wh: float = 0.0, scale: float = 1.0, start_wh: float = START_WH
) -> tuple[SessionBatch, float]:
    """14 min after the start, then every 15 min for 90 min, 11 kW throughout; the register in
    every third reading, counting ``scale`` of the energy, the first one ``leap_wh`` high. The
    batch, with meterStart and meterStop; and the energy the register counted to the stop."""
    t = 14 * MIN + 15 * MIN * np.arange(7)
    counted = START_WH + scale * POWER_W * t / 3600.0
    register = [float(e) if k % 3 == 0 else np.nan for k, e in enumerate(counted)]
    register[0] += leap_wh
    spec = Spec(t_s=list(t), energy_wh=register, power_w=[POWER_W] * t.size, station_id="AC22")
    batch = make_batch([spec])
    stop_s = (batch.stop_ns[0] - T0_NS) / 1e9
    stop_wh = START_WH + scale * POWER_W * stop_s / 3600.0
    batch.meter_start_wh[0] = start_wh
    batch.meter_stop_wh[0] = stop_wh - (START_WH - start_wh)
    return batch, stop_wh


def meter_flags(batch: SessionBatch) -> dict[str, str]:
    results = detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch))
    return {
        r.kind: str(r.reason[0]) for r in results if r.kind.startswith("meter_") and r.flagged[0]
    }


def test_a_first_register_that_leaps_past_the_meter_start_is_a_jump() -> None:
    batch, _ = register_every_45_min(leap_wh=62_300.0)
    flags = meter_flags(batch)
    assert "meter_jump" in flags, flags
    assert "from the meterStart to its first reading" in flags["meter_jump"], flags
    assert "meter_backwards" in flags, flags  # the register fell back at the next one


def test_a_right_register_from_the_meter_start_is_quiet() -> None:
    batch, _ = register_every_45_min()
    assert meter_flags(batch) == {}


def test_a_register_long_by_two_fifths_is_no_jump_from_the_meter_start() -> None:
    # every step rises 1.4 times what flows: the lead step too; a mismatch, not a jump
    batch, _ = register_every_45_min(scale=1.4)
    assert "meter_jump" not in meter_flags(batch)


def test_meter_values_counted_from_zero_beside_an_absolute_register_are_not_judged() -> None:
    # meterStart 0 and meterStop the session's energy, the readings' register absolute: the
    # meterStop is not the register's, so the lead step (52 MWh "in 14 min") is not judged
    batch, _ = register_every_45_min(start_wh=0.0)
    assert "meter_jump" not in meter_flags(batch)
