"""The anomaly kinds of CONTRACTS.md section 3, in its order.

The one list of kinds: the simulator injects and labels each of them, and each has exactly one
detector (``analytics.detectors.DETECTORS``, keyed by this enum; a test holds it to that). A
``StrEnum``: a kind equals its string, so labels, flags and JSON carry the plain value
(``"stall"``). Adding a kind: see ``analytics.detectors``.
"""

from __future__ import annotations

from enum import StrEnum


class AnomalyKind(StrEnum):
    STALL = "stall"
    EARLY_TAPER = "early_taper"
    METER_STUCK = "meter_stuck"
    METER_BACKWARDS = "meter_backwards"
    METER_JUMP = "meter_jump"
    METER_MISMATCH = "meter_mismatch"
    DATA_GAP = "data_gap"
    CLOCK_FAULT = "clock_fault"
    UNAUTHORIZED_ENERGY = "unauthorized_energy"
    SOC_INCONSISTENT = "soc_inconsistent"
    CONCURRENT_ID_TAG = "concurrent_id_tag"
