"""Connector 0 is the station itself (OCPP 1.6: its main energy meter, in clock-aligned
MeterValues; 2.0.1: EVSE 0): its register counts every connector at once. A third-party station
with two 11 kW connectors, both charging, sent through ``serve``: its main meter rose 5.5 kWh
every 15 minutes, which meter_jump judged against one connector's 11 kW."""

from __future__ import annotations

import numpy as np

from analytics.detectors import detect, fit_detectors
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
