"""early_taper on shapes an independently written fleet (``bench/field_fleet.py``) made normal:
an AC car's own end-of-charge taper into SuspendedEV before it wakes up overnight to condition its
battery, and energy on a connector with no session open."""

from __future__ import annotations

import numpy as np

from analytics.batch import StatusCode
from analytics.detectors import detect, fit_detectors
from tests.analytics.detectors.helpers import NOW_NS, Spec, from_power, make_batch, with_

MIN = 60.0
CHARGING, SUSPENDED_EV = int(StatusCode.CHARGING), int(StatusCode.SUSPENDED_EV)


def ac_taper_then_conditioning() -> Spec:
    """7.2 kW for 105 min, no SoC; the car's taper, power falling by 12 % a minute to 0.34 kW
    over 25 min; SuspendedEV at 0 W for 90 min; then battery conditioning at 2 kW for 20 min
    (Charging), and SuspendedEV again until the driver leaves (field seed 1, 00556afa)."""
    t = np.arange(0.0, 280 * MIN + 1e-9, MIN)
    p = np.full(t.size, 7_240.0)
    fall = (t > 105 * MIN) & (t <= 130 * MIN)
    p[fall] = np.maximum(7_240.0 * 0.88 ** ((t[fall] - 105 * MIN) / MIN), 340.0)
    p[(t > 130 * MIN) & (t <= 135 * MIN)] = 340.0
    status = np.full(t.size, CHARGING)
    rest = t > 135 * MIN
    p[rest] = 0.0
    status[rest] = SUSPENDED_EV
    wake = (t > 225 * MIN) & (t <= 245 * MIN)
    p[wake] = 2_000.0
    status[wake] = CHARGING
    p[0] = 0.0
    return from_power(t, p, offered_w=22_080.0, status=status)


def orphan_charge_that_falls() -> Spec:
    """A charge with no session open (a station that lost its transaction in a reboot): 3.5 kW,
    falling to 1.8 kW in a minute and held there for 76 min (field seed 3, FLD0006B)."""
    t = np.arange(0.0, 110 * MIN + 1e-9, MIN)
    p = np.where(t < 30 * MIN, 3_500.0, 1_800.0)
    spec = from_power(t, p, offered_w=11_000.0)
    return with_(spec, session_id=None, id_pseudonym=None, auth_result=None, start_s=None)


def _flagged(spec: Spec) -> set[str]:
    batch = make_batch([spec])
    results = detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch))
    return {r.kind for r in results if r.flagged[0]}


def test_an_ac_cars_taper_into_suspended_ev_is_its_own_whatever_it_draws_later() -> None:
    assert "early_taper" not in _flagged(ac_taper_then_conditioning())


def test_no_taper_is_judged_on_a_connector_with_no_session_open() -> None:
    flagged = _flagged(orphan_charge_that_falls())
    assert "early_taper" not in flagged
    assert "unauthorized_energy" in flagged
