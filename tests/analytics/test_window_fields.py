"""The window reads only the reading fields detection uses (``DETECTION_FIELDS``): the others stay
NaN in its batches, so no code of the analytics may come to depend on them unnoticed."""

from __future__ import annotations

import re
from pathlib import Path

from analytics.read.partition import DETECTION_FIELDS
from chargewatch.schema import READING_FIELDS

ANALYTICS = Path(__file__).resolve().parents[2] / "analytics"
# where the batch's columns are declared and where the reads name the fields: no use of them
DECLARED = {ANALYTICS / "batch.py", ANALYTICS / "read" / "partition.py"}


def test_no_analytics_code_uses_a_reading_field_the_window_does_not_read() -> None:
    unread = sorted(set(READING_FIELDS) - set(DETECTION_FIELDS))
    users = [
        f"{path.relative_to(ANALYTICS)}: {name}"
        for name in unread
        for path in sorted(ANALYTICS.rglob("*.py"))
        if path not in DECLARED and re.search(rf"\b{name}\b", path.read_text(encoding="utf-8"))
    ]
    assert users == [], "read these fields in DETECTION_FIELDS, or stop using them"


def test_the_window_reads_current_and_voltage_for_the_power_of_dc_stations() -> None:
    # a DC station reporting current and voltage but no power (analytics.assemble)
    assert {"current_a", "voltage_v"} <= set(DETECTION_FIELDS)
