"""A compact table of representative vehicles and their charging capabilities.

Battery sizes, AC limits and DC charging curves are taken from the open-ev-data project by
Chargeprice (github.com/chargeprice/open-ev-data, file data/ev-data.json, commit e495ff9,
MIT licence). Only model-specific curves were kept (no default curves). The nominal pack voltage
and the popularity weight are not in that source: they are typical values chosen here so that DC
current and the mix of cars look plausible for a European network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# SoC grid every 0.1 % on which capability curves are tabulated and integrated.
SOC_GRID_PCT: FloatArray = np.linspace(0.0, 100.0, 1001)


@dataclass(frozen=True, slots=True)
class Vehicle:
    """One car model: what it can take from an AC or a DC charger."""

    name: str
    battery_kwh: float  # usable capacity
    ac_phases: int  # phases the on-board charger uses
    ac_max_kw: float  # on-board charger limit
    dc_curve: tuple[tuple[float, float], ...]  # (SoC %, kW); empty for plug-in hybrids
    pack_voltage_v: float  # nominal, sets DC voltage and current
    weight: float  # relative share of sessions

    @property
    def dc_capable(self) -> bool:
        return bool(self.dc_curve)

    def dc_curve_w(self, soc_pct: FloatArray) -> FloatArray:
        """The car's DC power acceptance at each SoC, in W (linear between the source's points)."""
        soc_points = np.array([p[0] for p in self.dc_curve])
        kw_points = np.array([p[1] for p in self.dc_curve])
        return np.asarray(np.interp(soc_pct, soc_points, kw_points) * 1000.0)


VEHICLES: tuple[Vehicle, ...] = (
    Vehicle(
        "Tesla Model 3 LR", 74.0, 3, 11.0, ((0, 180), (40, 195), (60, 110), (100, 12)), 355.0, 10.0
    ),
    Vehicle(
        "Tesla Model Y LR", 72.5, 3, 11.0, ((0, 246), (35, 238), (75, 99), (100, 18)), 355.0, 10.0
    ),
    Vehicle(
        "Tesla Model S Long Range",
        95.0,
        3,
        16.5,
        ((0, 197), (30, 149), (50, 133), (80, 73), (100, 10)),
        375.0,
        2.0,
    ),
    Vehicle(
        "Volkswagen ID.3 58 kWh",
        58.0,
        3,
        11.0,
        ((0, 100), (30, 100), (70, 50), (80, 50), (100, 20)),
        370.0,
        8.0,
    ),
    Vehicle(
        "Volkswagen ID.4 77 kWh",
        77.0,
        3,
        11.0,
        ((0, 125), (30, 125), (70, 65), (80, 65), (100, 22)),
        400.0,
        7.0,
    ),
    Vehicle(
        "Skoda Enyaq iV 80",
        77.0,
        3,
        11.0,
        ((0, 125), (35, 125), (50, 100), (70, 70), (80, 70), (90, 37), (100, 25)),
        400.0,
        6.0,
    ),
    Vehicle(
        "Hyundai Ioniq 5",
        72.6,
        3,
        11.0,
        (
            (0, 200),
            (10, 210),
            (22, 232),
            (23, 185),
            (37, 185),
            (38, 175),
            (47, 175),
            (48, 155),
            (55, 155),
            (56, 130),
            (70, 130),
            (80, 100),
            (100, 11),
        ),
        697.0,
        5.0,
    ),
    Vehicle(
        "Kia e-Niro 64 kWh",
        64.0,
        3,
        11.0,
        (
            (0, 70),
            (40, 77),
            (42, 70),
            (53, 71),
            (55, 57),
            (71, 58),
            (72, 38),
            (76, 38),
            (78, 25),
            (88, 25),
            (100, 8),
        ),
        356.0,
        6.0,
    ),
    Vehicle(
        "Renault Zoe R135 ZE50", 52.0, 3, 22.0, ((0, 41), (52, 46), (80, 27), (100, 22)), 400.0, 6.0
    ),
    Vehicle(
        "Peugeot e-208 7.4 kW",
        45.0,
        1,
        7.4,
        (
            (0, 97),
            (16, 97),
            (17, 78),
            (46, 78),
            (47, 52),
            (68, 52),
            (69, 27),
            (83, 27),
            (84, 11),
            (100, 11),
        ),
        400.0,
        5.0,
    ),
    Vehicle(
        "Opel Corsa-e 11 kW",
        45.0,
        3,
        11.0,
        (
            (0, 99),
            (16, 99),
            (20, 95),
            (21, 75),
            (47, 75),
            (48, 53),
            (67, 53),
            (68, 41),
            (72, 41),
            (73, 27),
            (83, 27),
            (84, 11),
            (100, 11),
        ),
        400.0,
        4.0,
    ),
    Vehicle(
        "Nissan Leaf 40 kWh", 38.0, 1, 6.6, ((0, 41), (62, 45), (65, 36), (100, 15)), 350.0, 4.0
    ),
    Vehicle("BMW i3 120 Ah", 37.9, 3, 11.0, ((0, 44), (85, 50), (100, 3)), 353.0, 3.0),
    Vehicle(
        "Audi e-tron 55",
        86.5,
        3,
        11.0,
        ((0, 137), (70, 155), (72, 150), (78, 120), (82, 105), (100, 50)),
        396.0,
        3.0,
    ),
    Vehicle(
        "Mercedes-Benz EQA 250",
        66.6,
        3,
        11.0,
        ((0, 99), (35, 98), (65, 70), (85, 36), (100, 1)),
        420.0,
        3.0,
    ),
    Vehicle(
        "Ford Mustang Mach-E 88 kWh",
        88.0,
        3,
        11.0,
        ((0, 148), (35, 147), (60, 118), (80, 73), (100, 27)),
        375.0,
        3.0,
    ),
    Vehicle(
        "Polestar 2",
        72.5,
        3,
        11.0,
        (
            (0, 150),
            (18, 150),
            (20, 130),
            (40, 130),
            (42, 100),
            (55, 90),
            (57, 70),
            (79, 70),
            (80, 25),
            (100, 11),
        ),
        400.0,
        3.0,
    ),
    Vehicle(
        "Volvo XC40 P8 Recharge",
        75.0,
        3,
        11.0,
        ((0, 148), (35, 147), (70, 98), (85, 59), (100, 10)),
        400.0,
        3.0,
    ),
    Vehicle(
        "MG ZS EV",
        44.5,
        1,
        6.6,
        ((0, 70), (10, 80), (20, 70), (80, 55), (83, 18), (90, 18), (100, 6.6)),
        400.0,
        3.0,
    ),
    Vehicle("Volkswagen e-up!", 32.3, 2, 7.2, ((0, 32), (27, 34), (80, 14), (100, 7)), 307.0, 3.0),
    Vehicle(
        "Chevrolet Bolt 60 kWh",
        58.0,
        2,
        7.2,
        ((0, 55), (56, 38), (68, 24), (85, 16), (100, 0)),
        350.0,
        1.0,
    ),
    # Plug-in hybrids only charge on AC: short sessions with a small battery.
    Vehicle("Kia Niro PHEV", 8.9, 1, 3.3, (), 360.0, 2.0),
    Vehicle("Skoda Octavia iV PHEV", 13.0, 1, 3.6, (), 352.0, 2.0),
)

_WEIGHTS = np.array([v.weight for v in VEHICLES])
AC_VEHICLE_P: FloatArray = _WEIGHTS / _WEIGHTS.sum()
_DC_WEIGHTS = np.where([v.dc_capable for v in VEHICLES], _WEIGHTS, 0.0)
DC_VEHICLE_P: FloatArray = _DC_WEIGHTS / _DC_WEIGHTS.sum()
