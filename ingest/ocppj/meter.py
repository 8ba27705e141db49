"""Sampled meter values of either protocol version, turned into canonical ``Reading`` events.

OCPP 1.6 sends each value as a numeric string with a unit name; 2.0.1 sends a JSON number with a
unit and a power-of-ten multiplier. Both are parsed here into a ``Sample`` (measurand, phase,
location, value in the canonical unit), and the samples of one timestamp become one ``Reading``.

How a message's samples map onto a reading:

- Energy.Active.Import.Register -> ``energy_wh`` (Wh or kWh); Power.Active.Import -> ``power_w``
  (W or kW); Power.Offered -> ``power_offered_w`` (W or kW), or else Current.Offered (the
  limit per phase, in A, that AC chargers under smart charging report) times the sample's
  phase-to-neutral voltage times its phases with a current, when it gives those per phase
  (the limit that explains a lower power); Current.Import -> ``current_a``;
  Voltage -> ``voltage_v``; SoC -> ``soc_pct``; Temperature at the EV (the battery's) ->
  ``temperature_c`` (Celsius, the 1.6 misspelling Celcius, Fahrenheit or K). A 1.6
  ``SignedData`` value is skipped.
- Phases: a value without a phase is the total and always wins. Without one, energy and power
  (and the offered power) are the sum of the phases L1, L2, L3 (or L1-N, L2-N, L3-N); current is
  the average of those phases, since a three-phase charger's current is conventionally given
  per phase (the neutral N is left out); voltage is the average phase-to-neutral voltage, or the
  average line-to-line voltage divided by sqrt(3) when only that is sent.
- Location: a value at the Outlet (the default) beats the same measurand at the Inlet, Cable or
  EV, per-phase values at the Outlet included (they beat a total given elsewhere).
  Temperatures are the battery's: only those at the EV are kept (the hottest, when it sends
  several); the charger's (Body, Cable, Inlet, Outlet, or no location: Outlet is the default)
  are accepted and counted, not stored. SoC comes from the EV whatever its location says.
- Measurands the event format has no field for (export and reactive energy and power, interval
  energies, Current.Export, Frequency, Power.Factor, RPM) are accepted and counted, not stored.
  Every context (Sample.Periodic, Sample.Clock, Transaction.Begin/End, Trigger, Interruption.*)
  is a sample like any other.
- Impossible values (a negative register, voltage or offered power, SoC outside 0..100, a
  temperature below absolute zero, a value that is not a finite number, a unit that does not
  fit the measurand) reject the whole message with ``ValueRejectedError`` naming the value.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple

from chargewatch.events import READING_RANGES, Reading

__all__ = ["Measurand", "Phase", "Sample", "ValueRejectedError", "reading_from_samples", "sample"]

_SQRT3 = math.sqrt(3.0)


class ValueRejectedError(Exception):
    """A sampled value is impossible or does not parse; ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class Measurand(StrEnum):
    """The OCPP measurands (identical names in 1.6 and 2.0.1)."""

    CURRENT_EXPORT = "Current.Export"
    CURRENT_IMPORT = "Current.Import"
    CURRENT_OFFERED = "Current.Offered"
    ENERGY_ACTIVE_EXPORT_REGISTER = "Energy.Active.Export.Register"
    ENERGY_ACTIVE_IMPORT_REGISTER = "Energy.Active.Import.Register"
    ENERGY_REACTIVE_EXPORT_REGISTER = "Energy.Reactive.Export.Register"
    ENERGY_REACTIVE_IMPORT_REGISTER = "Energy.Reactive.Import.Register"
    ENERGY_ACTIVE_EXPORT_INTERVAL = "Energy.Active.Export.Interval"
    ENERGY_ACTIVE_IMPORT_INTERVAL = "Energy.Active.Import.Interval"
    ENERGY_ACTIVE_NET = "Energy.Active.Net"
    ENERGY_REACTIVE_EXPORT_INTERVAL = "Energy.Reactive.Export.Interval"
    ENERGY_REACTIVE_IMPORT_INTERVAL = "Energy.Reactive.Import.Interval"
    ENERGY_REACTIVE_NET = "Energy.Reactive.Net"
    ENERGY_APPARENT_NET = "Energy.Apparent.Net"
    ENERGY_APPARENT_IMPORT = "Energy.Apparent.Import"
    ENERGY_APPARENT_EXPORT = "Energy.Apparent.Export"
    FREQUENCY = "Frequency"
    POWER_ACTIVE_EXPORT = "Power.Active.Export"
    POWER_ACTIVE_IMPORT = "Power.Active.Import"
    POWER_FACTOR = "Power.Factor"
    POWER_OFFERED = "Power.Offered"
    POWER_REACTIVE_EXPORT = "Power.Reactive.Export"
    POWER_REACTIVE_IMPORT = "Power.Reactive.Import"
    RPM = "RPM"
    SOC = "SoC"
    TEMPERATURE = "Temperature"
    VOLTAGE = "Voltage"


class Phase(StrEnum):
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    N = "N"
    L1_N = "L1-N"
    L2_N = "L2-N"
    L3_N = "L3-N"
    L1_L2 = "L1-L2"
    L2_L3 = "L2-L3"
    L3_L1 = "L3-L1"


# A phase value given line-to-neutral counts as that phase (L1-N is L1): never both.
_PHASE_OF = {
    Phase.L1: Phase.L1,
    Phase.L2: Phase.L2,
    Phase.L3: Phase.L3,
    Phase.L1_N: Phase.L1,
    Phase.L2_N: Phase.L2,
    Phase.L3_N: Phase.L3,
}
_LINE_TO_LINE = frozenset({Phase.L1_L2, Phase.L2_L3, Phase.L3_L1})
_PHASE_NAMES = {p.value: p for p in Phase}
_PREFERRED_LOCATIONS = frozenset({"Outlet", None})
# ``temperature_c`` is the battery's (CONTRACTS.md: soc_inconsistent judges what a pack
# tolerates), which OCPP places at the EV; Body, Cable, Inlet and Outlet (the default) are the
# charger's own, whose 60-80 degC under high power are normal and no battery's.
_BATTERY_LOCATION = "EV"


class _Field(StrEnum):
    ENERGY = "energy_wh"
    POWER = "power_w"
    POWER_OFFERED = "power_offered_w"
    CURRENT = "current_a"
    VOLTAGE = "voltage_v"
    SOC = "soc_pct"
    TEMPERATURE = "temperature_c"
    CURRENT_OFFERED = "current_offered_a"  # no reading's field: becomes power_offered_w


# measurand -> (field, default unit, {unit: (scale, offset)}, low, high); the ranges are the
# kernel's, as for JSON events
_Units = dict[str, tuple[float, float]]
_WH: _Units = {"Wh": (1.0, 0.0), "kWh": (1000.0, 0.0)}
_W: _Units = {"W": (1.0, 0.0), "kW": (1000.0, 0.0)}
_TEMPERATURE: _Units = {
    "Celsius": (1.0, 0.0),
    "Celcius": (1.0, 0.0),  # the OCPP 1.6 schema's misspelling, sent by real chargers
    "Fahrenheit": (5.0 / 9.0, -32.0 * 5.0 / 9.0),
    "K": (1.0, -273.15),
}


def _ranged(field: _Field, unit: str, units: _Units) -> tuple[_Field, str, _Units, float, float]:
    return (field, unit, units, *READING_RANGES[field.value])


_MAPPED: dict[Measurand, tuple[_Field, str, _Units, float, float]] = {
    Measurand.ENERGY_ACTIVE_IMPORT_REGISTER: _ranged(_Field.ENERGY, "Wh", _WH),
    Measurand.POWER_ACTIVE_IMPORT: _ranged(_Field.POWER, "W", _W),
    Measurand.POWER_OFFERED: _ranged(_Field.POWER_OFFERED, "W", _W),
    Measurand.CURRENT_IMPORT: _ranged(_Field.CURRENT, "A", {"A": (1.0, 0.0)}),
    Measurand.VOLTAGE: _ranged(_Field.VOLTAGE, "V", {"V": (1.0, 0.0)}),
    Measurand.SOC: _ranged(_Field.SOC, "Percent", {"Percent": (1.0, 0.0)}),
    Measurand.TEMPERATURE: _ranged(_Field.TEMPERATURE, "Celsius", _TEMPERATURE),
    # As lenient as Current.Import (it was accepted unchecked before it was used at all); only
    # a value of at least 0 is turned into an offered power.
    Measurand.CURRENT_OFFERED: (
        _Field.CURRENT_OFFERED,
        "A",
        {"A": (1.0, 0.0)},
        *READING_RANGES[_Field.CURRENT.value],
    ),
}
_SUMMED = frozenset({_Field.ENERGY, _Field.POWER, _Field.POWER_OFFERED})


class Sample(NamedTuple):
    """One sampled value in the canonical unit of its field; ``field`` None: not stored."""

    field: _Field | None
    value: float
    phase: Phase | None
    location: str | None


def sample(
    raw_value: object,
    *,
    measurand: str | None,
    unit: str | None,
    phase: str | None,
    location: str | None,
    multiplier: int = 0,
    where: str,
) -> Sample:
    """Parse one sampled value; ``raw_value`` is a 1.6 numeric string or a 2.0.1 number."""
    try:
        kind = Measurand(measurand or Measurand.ENERGY_ACTIVE_IMPORT_REGISTER)
    except ValueError:
        raise ValueRejectedError(f"{where}.measurand", "is not an OCPP measurand") from None
    value = _finite(raw_value, where, multiplier)
    mapped = _MAPPED.get(kind)
    parsed_phase = _PHASE_NAMES.get(phase) if phase is not None else None
    if mapped is None:
        return Sample(None, value, parsed_phase, location)
    field, default_unit, units, low, high = mapped
    conversion = units.get(unit or default_unit)
    if conversion is None:
        allowed = ", ".join(units)
        raise ValueRejectedError(f"{where}.unit", f"{kind.value} must be given in {allowed}")
    scale, offset = conversion
    value = value * scale + offset
    if not low <= value <= high:
        raise ValueRejectedError(
            where, f"{kind.value} {value:g} is impossible ({_range(low, high)})"
        )
    return Sample(field, value, parsed_phase, location)


def _range(low: float, high: float) -> str:
    if high == sys.float_info.max:  # the kernel's "unbounded"
        return f"must be at least {low:g}"
    return f"outside {low:g}..{high:g}"


def _finite(raw: object, where: str, multiplier: int) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueRejectedError(f"{where}.value", "must be a number")
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        raise ValueRejectedError(f"{where}.value", "is not a number") from None
    if multiplier:
        if not -30 <= multiplier <= 30:
            raise ValueRejectedError(f"{where}.unitOfMeasure.multiplier", "must lie within -30..30")
        value *= 10.0**multiplier
    if not math.isfinite(value):
        raise ValueRejectedError(f"{where}.value", "must be a finite number")
    return value


def reading_from_samples(
    ts_ns: int,
    station_id: str,
    connector_id: int,
    session_id: str | None,
    samples: Iterable[Sample],
) -> Reading | None:
    """The reading of one timestamp's samples, or None when none of them maps to a field."""
    values = _Gathered.of(samples).values()
    if not values:
        return None
    return Reading(ts_ns, station_id, connector_id, session_id, **values)


class _Gathered:
    """One timestamp's samples sorted by what they can become: totals, phases, temperatures."""

    def __init__(self) -> None:
        self.totals: dict[_Field, tuple[bool, float]] = {}  # field -> (preferred location, value)
        self.phases: dict[_Field, dict[Phase, float]] = {}
        self.line_to_line: dict[Phase, float] = {}
        self.hottest: float | None = None

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> _Gathered:
        gathered = cls()
        for s in samples:
            if s.field is not None:
                gathered.add(s.field, s)
        return gathered

    def add(self, field: _Field, s: Sample) -> None:
        if field is _Field.TEMPERATURE:
            if s.location == _BATTERY_LOCATION:  # the charger's own temperatures: not stored
                self.hottest = s.value if self.hottest is None else max(self.hottest, s.value)
            return
        preferred = s.location in _PREFERRED_LOCATIONS or field is _Field.SOC
        if s.phase is None:
            held = self.totals.get(field)
            if held is None or preferred or not held[0]:
                self.totals[field] = (preferred, s.value)
        elif s.phase in _PHASE_OF and preferred:
            self.phases.setdefault(field, {})[_PHASE_OF[s.phase]] = s.value
        elif s.phase in _LINE_TO_LINE and field is _Field.VOLTAGE and preferred:
            self.line_to_line[s.phase] = s.value

    def values(self) -> dict[str, float]:
        """Each field's value: its total, else from its phases (summed or averaged); phases at
        the Outlet beat a total only elsewhere (the EV's, say), as any Outlet value does."""
        values = {f.value: v for f, (_preferred, v) in self.totals.items()}
        at_outlet = {f for f, (preferred, _v) in self.totals.items() if preferred}
        for f, by_phase in self.phases.items():  # phases are kept at the Outlet only
            if f in at_outlet or not by_phase:
                continue
            total = math.fsum(by_phase.values())
            values[f.value] = total if f in _SUMMED else total / len(by_phase)
            at_outlet.add(f)
        if _Field.VOLTAGE not in at_outlet and self.line_to_line:
            line_to_line = math.fsum(self.line_to_line.values()) / len(self.line_to_line)
            values[_Field.VOLTAGE.value] = line_to_line / _SQRT3
        if self.hottest is not None:
            values[_Field.TEMPERATURE.value] = self.hottest
        offered_a = values.pop(_Field.CURRENT_OFFERED.value, None)
        if offered_a is not None and _Field.POWER_OFFERED.value not in values:
            offered_w = self._offered_power_w(offered_a)
            if offered_w is not None:
                values[_Field.POWER_OFFERED.value] = offered_w
        return values

    def _offered_power_w(self, offered_a: float) -> float | None:
        """The power that Current.Offered (per phase) allows: amps x phase-to-neutral volts x
        the phases that carry current, when the sample gives its phases' currents and volts;
        None otherwise (totals alone do not say how many phases a charger uses)."""
        phases = len(self.phases.get(_Field.CURRENT, {}))
        volts = self.phases.get(_Field.VOLTAGE)
        if volts:
            phase_v = math.fsum(volts.values()) / len(volts)
        elif self.line_to_line:
            phase_v = math.fsum(self.line_to_line.values()) / len(self.line_to_line) / _SQRT3
        else:
            return None
        if not phases or offered_a < 0.0:
            return None
        return offered_a * phase_v * phases
