"""An idle connector's register rise that a session on the connector counted as its own is that
session's energy, whatever the stamps say (``energy.within_sessions_meter_values``): a station
whose clock stamped a whole session years ahead leaves no energy "delivered with no session"."""

from __future__ import annotations

import numpy as np

from analytics.detectors import detect, fit_detectors
from tests.analytics.detectors.helpers import NOW_NS, Spec, from_power, make_batch, with_

MIN = 60.0
YEARS_AHEAD_S = 11.7 * 365 * 86_400.0
REGISTER_WH = 50_477_305.0


def idle_with_a_rise(rise_wh: float) -> Spec:
    """Idle readings every 15 min for 10 h at 0 W; the register rises by ``rise_wh`` between
    two of them (a reading lost in between), as the outside fleet's seed 19 showed."""
    at = np.arange(0.0, 10 * 60.0 + 1e-9, 15.0) * MIN
    at = at[at != 8 * 60.0 + 15.0]  # the reading of 08:15 lost
    register = np.where(at > 8 * 60.0 * MIN, REGISTER_WH + rise_wh, REGISTER_WH)
    return with_(
        _orphan(from_power(at, np.zeros(at.size), offered_w=50_000.0)), energy_wh=list(register)
    )


def _orphan(spec: Spec) -> Spec:
    """``spec`` as readings with no session open."""
    return with_(
        spec, session_id=None, id_pseudonym=None, auth_result=None, start_s=None, stop_s=None
    )


def session_stamped_ahead(register0_wh: float, minutes: float = 14.0) -> Spec:
    """42 kW DC for ``minutes``, read every 20 s, its start, readings and stop stamped 11.7
    years ahead; no meter values (the station sends none)."""
    at = np.arange(0.0, minutes * MIN + 1e-9, 20.0)
    power = np.where(at > 0, 42_000.0, 0.0)
    spec = from_power(at, power, register0_wh=register0_wh, offered_w=50_000.0)
    return with_(spec, session_id="ahead", offset_s=8 * 3600.0 + YEARS_AHEAD_S)


def _flagged(specs: list[Spec]) -> dict[str, set[str]]:
    batch = make_batch(specs)
    results = detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch))
    return {
        str(sid): {r.kind for r in results if r.flagged[row]}
        for row, sid in enumerate(batch.session_id)
    }


def test_the_rise_of_a_session_stamped_years_ahead_is_that_sessions() -> None:
    ahead = session_stamped_ahead(REGISTER_WH)
    rise = float(ahead.energy_wh[-1]) - REGISTER_WH  # type: ignore[index]
    # the idle register shows 106 Wh more than the session's last reading: its last seconds
    flagged = _flagged([idle_with_a_rise(rise + 106.0), ahead])
    assert flagged == {"None": set(), "ahead": {"clock_fault"}}


def test_a_rise_no_session_holds_is_energy_delivered_to_no_one() -> None:
    flagged = _flagged([idle_with_a_rise(9_775.0)])
    assert "unauthorized_energy" in flagged["None"]


def test_a_session_elsewhere_on_the_register_explains_nothing() -> None:
    # the same session, but its register 30 kWh further on: not this rise
    flagged = _flagged([idle_with_a_rise(9_775.0), session_stamped_ahead(REGISTER_WH + 30_000)])
    assert "unauthorized_energy" in flagged["None"]


def test_a_session_on_another_connector_explains_nothing() -> None:
    ahead = with_(session_stamped_ahead(REGISTER_WH), connector_id=2)
    flagged = _flagged([idle_with_a_rise(9_775.0), ahead])
    assert "unauthorized_energy" in flagged["None"]


def test_a_register_reset_in_a_session_spans_nothing() -> None:
    # a session whose register falls to 0 and counts on spans 0 .. 50 MWh by its values, but
    # its readings rise by 9 kWh only: it explains no rise below it
    ahead = session_stamped_ahead(REGISTER_WH - 20_000.0)
    register = np.asarray(ahead.energy_wh, dtype=np.float64)
    half = register.size // 2
    register[half:] = register[half:] - register[half]
    flagged = _flagged([idle_with_a_rise(9_775.0), with_(ahead, energy_wh=list(register))])
    assert "unauthorized_energy" in flagged["None"]


def test_a_register_creeping_with_standby_delivers_nothing() -> None:
    # field fleet seeds 1-4: an idle connector read every 15 min for 18 h, 7 W of standby and
    # its register 2 Wh up a reading: 0.13 kWh "delivered with no session open"
    at = np.arange(0.0, 18 * 60.0 + 1e-9, 15.0) * MIN
    register = REGISTER_WH + np.floor(at / 3600.0 * 7.0)
    idle = with_(
        _orphan(from_power(at, np.full(at.size, 7.0), offered_w=22_000.0)),
        energy_wh=list(register),
    )
    assert "unauthorized_energy" not in _flagged([idle])["None"]
    # the same connector drawing 3.7 kW for 10 min in between is energy delivered to no one
    power = np.where((at >= 6 * 3600.0) & (at < 6 * 3600.0 + 600.0), 3_700.0, 7.0)
    charged = _orphan(from_power(at, power, register0_wh=REGISTER_WH, offered_w=22_000.0))
    assert "unauthorized_energy" in _flagged([charged])["None"]


def test_a_coarse_register_creeping_in_whole_units_delivers_nothing() -> None:
    # field fleet seed 9, FLD0001C: a register in 10 Wh, read every 5 min, creeping at 8 W:
    # one unit every 75 min, each "120 W" over the step it falls in
    at = np.arange(0.0, 20 * 60.0 + 1e-9, 5.0) * MIN
    register = REGISTER_WH + np.floor(at / 3600.0 * 8.0 / 10.0) * 10.0
    idle = with_(
        _orphan(from_power(at, np.full(at.size, 8.0), offered_w=22_000.0)),
        energy_wh=list(register),
    )
    assert "unauthorized_energy" not in _flagged([idle])["None"]
