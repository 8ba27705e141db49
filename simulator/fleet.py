"""The charging stations of a simulated network and the cards of its users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .output import PLAIN_STYLE, MessageStyle, draw_style

# AC points: (phases, current per phase in A), weighted towards today's 11 and 22 kW boxes.
_AC_SUPPLIES: tuple[tuple[int, float], ...] = ((1, 16.0), (1, 32.0), (3, 16.0), (3, 32.0))
_AC_SUPPLY_P = (0.05, 0.15, 0.45, 0.35)
# DC: (rating kW, output current limit A). High-power units are current-limited for 400 V cars.
_DC_RATINGS: tuple[tuple[float, float], ...] = (
    (50.0, 125.0),
    (100.0, 250.0),
    (150.0, 375.0),
    (300.0, 500.0),
    (350.0, 500.0),
)
_DC_RATING_P = (0.25, 0.15, 0.3, 0.15, 0.15)
# MeterValueSampleInterval values operators actually configure.
_INTERVALS_S = (10, 15, 20, 30, 45, 60)
_AC_INTERVAL_P = (0.05, 0.1, 0.1, 0.3, 0.1, 0.35)
# DC: a fifth sample every 60 s, the OCPP default many operators never change.
_DC_INTERVAL_P = (0.2, 0.15, 0.15, 0.25, 0.05, 0.2)
# Where a station reports its register (OCPP 1.6 MeterValuesSampledData and StopTxnSampledData):
# with every sample; only in the transaction's Begin and End meter values; only in
# StartTransaction's meterStart and StopTransaction's meterStop (power sampled in between).
REGISTER_IN = ("every", "ends", "transaction")
_REGISTER_IN_P = (0.8, 0.12, 0.08)
# Stations sampling every minute whose clock stamps whole minutes (as session tables do).
_MINUTE_STAMPS_P = 0.25
# AC stations configured to sample Current.Import and Voltage (per phase) with the register, and
# no Power.Active.Import: a wallbox whose meter is its own current sensing.
_CURRENT_NOT_POWER_P = 0.1


@dataclass(frozen=True, slots=True)
class StationSpec:
    """One charging station and the habits of its firmware and meter."""

    index: int
    station_id: str
    is_dc: bool
    connectors: int
    phases: int  # AC supply phases (DC: 3, unused)
    phase_current_a: float  # AC current limit per phase
    phase_voltage_v: float  # AC grid voltage at this site
    rating_w: float  # connector power limit
    max_current_a: float  # DC output current limit
    interval_s: int  # MeterValues sampling interval
    meter_resolution_wh: int
    reports_soc: bool
    reports_temperature: bool
    reports_idle: bool  # idle connectors send their register every 15 min
    power_noise: float  # relative standard deviation of reported power
    drop_prob: float  # chance that one periodic reading is lost
    popularity: float  # scales the arrival rate
    initial_register_wh: tuple[float, ...]  # per connector, at the start of the run
    style: MessageStyle = PLAIN_STYLE  # how its firmware writes messages (output.py)
    register_in: str = "every"  # where the register is reported (REGISTER_IN)
    stamp_unit_ms: int = 1  # its clock's stamps are whole multiples of this (60_000: minutes)
    reports_power: bool = True  # False: current and voltage only (_CURRENT_NOT_POWER_P)


def make_station(index: int, rng: np.random.Generator) -> StationSpec:
    """Draw one station's hardware and firmware habits."""
    is_dc = bool(rng.random() < 0.4)
    if is_dc:
        rating_kw, max_current_a = _DC_RATINGS[rng.choice(len(_DC_RATINGS), p=_DC_RATING_P)]
        connectors = 2 if rng.random() < 0.55 else 1
        phases, phase_current_a = 3, 0.0
        rating_w = rating_kw * 1000.0
        interval_s = int(rng.choice(_INTERVALS_S, p=_DC_INTERVAL_P))
        register_scale_wh = 40e6  # DC meters see far more energy per year
    else:
        phases, phase_current_a = _AC_SUPPLIES[rng.choice(len(_AC_SUPPLIES), p=_AC_SUPPLY_P)]
        connectors = 2 if rng.random() < 0.85 else 1
        max_current_a = phase_current_a
        rating_w = 0.0  # set below from the actual site voltage
        interval_s = int(rng.choice(_INTERVALS_S, p=_AC_INTERVAL_P))
        register_scale_wh = 4e6
    phase_voltage_v = float(rng.uniform(224.0, 238.0))
    if not is_dc:
        rating_w = phases * phase_current_a * phase_voltage_v
    kind = "DC" if is_dc else "AC"
    return StationSpec(
        index=index,
        station_id=f"CW-{kind}-{index + 1:04d}",
        is_dc=is_dc,
        connectors=connectors,
        phases=phases,
        phase_current_a=phase_current_a,
        phase_voltage_v=phase_voltage_v,
        rating_w=rating_w,
        max_current_a=max_current_a,
        interval_s=interval_s,
        meter_resolution_wh=10 if rng.random() < 0.2 else 1,
        reports_soc=is_dc or bool(rng.random() < 0.05),
        reports_temperature=bool(rng.random() < (0.5 if is_dc else 0.15)),
        reports_idle=bool(rng.random() < 0.5),
        power_noise=float(rng.uniform(0.003, 0.008)),
        drop_prob=float(rng.uniform(0.002, 0.02)),
        popularity=float(rng.lognormal(0.0, 0.35)),
        initial_register_wh=tuple(
            float(x) for x in rng.uniform(0.02, 1.0, size=connectors) * register_scale_wh
        ),
        # from a child stream: the style takes no draw from the station's own
        style=draw_style(rng.spawn(1)[0]),
        # likewise: how the meter is read takes no draw from the station's own stream
        **_metering(interval_s, is_dc, rng.spawn(1)[0]),
    )


def _metering(interval_s: int, is_dc: bool, rng: np.random.Generator) -> dict[str, Any]:
    """How a station's meter is read: where the register is reported (``REGISTER_IN``);
    stamps in whole minutes (only where it samples once a minute: a faster sampler stamping
    minutes would send readings that cannot be told apart); current and voltage in place of
    power (``_CURRENT_NOT_POWER_P``, AC stations that sample the register every time: a
    station configured beyond the default measurand keeps the register)."""
    minutes = interval_s == 60 and bool(rng.random() < _MINUTE_STAMPS_P)
    register_in = str(rng.choice(REGISTER_IN, p=_REGISTER_IN_P))
    current = not is_dc and register_in == "every" and bool(rng.random() < _CURRENT_NOT_POWER_P)
    return {
        "register_in": register_in,
        "stamp_unit_ms": 60_000 if minutes else 1,
        "reports_power": not current,
    }


_HEX = np.array(list("0123456789ABCDEF"))
_ALNUM = np.array(list("0123456789ABCDEFGHJKLMNPRSTUVWXYZ"))
_COUNTRIES = ("DE", "NL", "FR", "AT", "BE", "CH")


def make_id_tags(count: int, rng: np.random.Generator) -> list[str]:
    """A pool of distinct user credentials: mostly RFID card UIDs, some contract ids (eMAID)."""
    tags: list[str] = []
    seen: set[str] = set()
    while len(tags) < count:
        roll = rng.random()
        if roll < 0.55:  # 7-byte NXP UID, manufacturer byte 04
            tag = "04" + "".join(rng.choice(_HEX, size=12))
        elif roll < 0.75:  # 4-byte UID
            tag = "".join(rng.choice(_HEX, size=8))
        else:  # eMAID: country, provider, instance, check character
            country = _COUNTRIES[int(rng.integers(len(_COUNTRIES)))]
            provider = "".join(rng.choice(_ALNUM, size=3))
            instance = "C" + "".join(rng.choice(_ALNUM, size=8))
            tag = f"{country}-{provider}-{instance}-{rng.choice(_ALNUM)}"
        if tag not in seen:
            seen.add(tag)
            tags.append(tag)
    return tags
