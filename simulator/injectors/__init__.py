"""The anomaly injectors, one per kind of CONTRACTS.md section 3, keyed by kind.

A new kind is one ``Injector`` (in the module of its family, or a module of its own) and one
line below; nothing else in the simulator dispatches on the kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from chargewatch.kinds import AnomalyKind

from .base import FleetSessions, Injector, Label, SessionCharge, SessionSpan
from .battery import SocInconsistent
from .billing import ConcurrentIdTag, UnauthorizedEnergy
from .charging import EarlyTaper, Stall
from .meter import MeterBackwards, MeterJump, MeterMismatch, MeterStuck
from .telemetry import ClockFault, DataGap

__all__ = [
    "INJECTORS",
    "FleetSessions",
    "Injector",
    "Label",
    "SessionCharge",
    "SessionSpan",
]

INJECTORS: Mapping[AnomalyKind, Injector] = MappingProxyType(
    {
        AnomalyKind.STALL: Stall(),
        AnomalyKind.EARLY_TAPER: EarlyTaper(),
        AnomalyKind.METER_STUCK: MeterStuck(),
        AnomalyKind.METER_BACKWARDS: MeterBackwards(),
        AnomalyKind.METER_JUMP: MeterJump(),
        AnomalyKind.METER_MISMATCH: MeterMismatch(),
        AnomalyKind.DATA_GAP: DataGap(),
        AnomalyKind.CLOCK_FAULT: ClockFault(),
        AnomalyKind.UNAUTHORIZED_ENERGY: UnauthorizedEnergy(),
        AnomalyKind.SOC_INCONSISTENT: SocInconsistent(),
        AnomalyKind.CONCURRENT_ID_TAG: ConcurrentIdTag(),
    }
)
