"""The power of readings from stations that send current and voltage instead (the simulator's
``StationSpec.reports_power`` False), for the checks that read each reading's ``power_w``.

The current is per phase, and how many phases the car draws on is not in the events: it is
taken, per session, as the whole number (1-3) that makes the current agree with the register
over the session (1 where the register does not move). The simulator's physics checks on these
sessions therefore test everything but the agreement itself, which ``test_simulator.py``'s
``test_current_only_stations_agree_with_their_register`` tests on its own.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np


def _s(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def phases_of(readings: list[dict[str, Any]]) -> float:
    """The whole number of phases (1-3) that makes ``readings``' current x voltage integrate
    to their register's rise (1 where it cannot tell)."""
    t = np.array([_s(r["ts"]) for r in readings])
    va = np.array([float(r["current_a"]) * float(r.get("voltage_v", 230.0)) for r in readings])
    e = np.array([float(r.get("energy_wh", np.nan)) for r in readings])
    one_wh = float(np.sum(0.5 * (va[1:] + va[:-1]) * np.diff(t)) / 3600.0)
    known = e[~np.isnan(e)]
    if one_wh < 100.0 or known.size < 2:
        return 1.0
    return float(np.clip(round((known[-1] - known[0]) / one_wh), 1, 3))


def fill_power(events: list[dict[str, Any]]) -> None:
    """Give each reading without ``power_w`` but with ``current_a`` the power it stands for
    (current x voltage x ``phases_of`` its session; outside a session, one phase)."""
    by_session: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["type"] == "reading" and "power_w" not in e and "current_a" in e:
            by_session[e.get("session_id")].append(e)
    for sid, readings in by_session.items():
        n = phases_of(readings) if sid is not None else 1.0
        for r in readings:
            volts = float(r.get("voltage_v", 230.0))
            r["power_w"] = round(float(r["current_a"]) * volts * n, 1)
