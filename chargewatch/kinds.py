"""The anomaly kinds of CONTRACTS.md section 3: one list for the simulator, detectors and tests."""

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
    CONCURRENT_ID_TAG = "concurrent_id_tag"
