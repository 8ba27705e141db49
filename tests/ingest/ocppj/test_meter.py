"""How sampled values of each unit, phase and location become a reading's fields."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.ocppj.meter import ValueRejectedError, reading_from_samples, sample


def sv(value: Any, measurand: str | None = None, unit: str | None = None, **extra: Any) -> Any:
    return sample(
        value,
        measurand=measurand,
        unit=unit,
        phase=extra.get("phase"),
        location=extra.get("location"),
        multiplier=extra.get("multiplier", 0),
        where="sv",
    )


def fields(*samples: Any) -> dict[str, float]:
    reading = reading_from_samples(0, "S", 1, None, samples)
    assert reading is not None
    return {k: v for k, v in reading._asdict().items() if isinstance(v, float)}


E, P, A, V = "Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage"


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([sv("1234.5")], {"energy_wh": 1234.5}),  # defaults: energy register, Wh
        ([sv("1.5", E, "kWh")], {"energy_wh": 1500.0}),
        ([sv(1.5, E, "Wh", multiplier=3)], {"energy_wh": 1500.0}),  # 2.0.1 multiplier
        ([sv("7.4", P, "kW")], {"power_w": 7400.0}),
        ([sv("-3000", P, "W")], {"power_w": -3000.0}),  # bidirectional: export
        ([sv("11", "Power.Offered", "kW")], {"power_offered_w": 11000.0}),
        # phases without a total: energy and power summed, current averaged
        (
            [sv("100", P, phase="L1"), sv("200", P, phase="L2"), sv("300", P, phase="L3")],
            {"power_w": 600.0},
        ),
        (
            [
                sv("10", A, phase="L1"),
                sv("12", A, phase="L2"),
                sv("14", A, phase="L3"),
                sv("1", A, phase="N"),
            ],
            {"current_a": 12.0},
        ),
        # a total beats the phases
        ([sv("5000", P), sv("100", P, phase="L1")], {"power_w": 5000.0}),
        # L1 and L1-N are the same phase, never counted twice
        ([sv("100", P, phase="L1"), sv("100", P, phase="L1-N")], {"power_w": 100.0}),
        ([sv("230", V, phase="L1-N"), sv("232", V, phase="L2-N")], {"voltage_v": 231.0}),
        (
            [sv("400", V, phase="L1-L2"), sv("400", V, phase="L2-L3")],
            {"voltage_v": pytest.approx(230.94, abs=0.01)},
        ),
        ([sv("20", "Temperature", "Celcius", location="EV")], {"temperature_c": 20.0}),
        (
            [sv("68", "Temperature", "Fahrenheit", location="EV")],
            {"temperature_c": pytest.approx(20.0)},
        ),
        ([sv("300", "Temperature", "K", location="EV")], {"temperature_c": pytest.approx(26.85)}),
        (
            [sv("30", "Temperature", location="EV"), sv("35", "Temperature", location="EV")],
            {"temperature_c": 35.0},
        ),  # the hottest of the battery's
        (
            [
                sv("1", E),
                sv("75", "Temperature", location="Body"),
                sv("68", "Temperature", location="Cable"),
                sv("40", "Temperature"),  # no location: the Outlet, the charger's
            ],
            {"energy_wh": 1.0},
        ),  # the charger's own temperatures are no battery's
        ([sv("80", "SoC", "Percent", location="EV")], {"soc_pct": 80.0}),
        # the outlet (delivered energy) beats the inlet
        ([sv("900", E, location="Outlet"), sv("950", E, location="Inlet")], {"energy_wh": 900.0}),
        ([sv("950", E, location="Inlet"), sv("900", E)], {"energy_wh": 900.0}),
        (
            [sv("1", E), sv("50", "Frequency", "Hertz"), sv("2", "Energy.Active.Export.Register")],
            {"energy_wh": 1.0},
        ),
    ],
)
def test_samples_map_to_reading_fields(samples: list[Any], expected: dict[str, float]) -> None:
    assert fields(*samples) == expected


def test_samples_without_a_field_give_no_reading() -> None:
    assert reading_from_samples(0, "S", 1, None, [sv("50", "Frequency", "Hertz")]) is None


@pytest.mark.parametrize(
    ("value", "measurand", "unit", "reason"),
    [
        ("-1", E, "Wh", "impossible"),
        ("-230", V, "V", "impossible"),
        ("100.5", "SoC", "Percent", "impossible"),
        ("-300", "Temperature", "Celsius", "impossible"),
        ("-10", "Power.Offered", "W", "impossible"),
        ("nan", P, "W", "finite"),
        ("1,5", E, "kWh", "not a number"),
        ("5", V, "kV", "must be given in V"),
        ("5", "Color", None, "measurand"),
    ],
)
def test_impossible_values_are_rejected(value: str, measurand: str, unit: str, reason: str) -> None:
    with pytest.raises(ValueRejectedError, match=reason):
        sv(value, measurand, unit)
