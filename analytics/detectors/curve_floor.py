"""Where early_taper's floor of DC power over SoC comes from: published charging curves.

``dc_curve_floor.json`` (beside this module, read by ``early_taper``) is what ``floor_table``
makes of the open-ev-data file of Chargeprice (MIT licence; a copy is in
``../shared/data/ev-curves``, not in this repository). To make it again::

    .venv/bin/python -m analytics.detectors.curve_floor ../shared/data/ev-curves/ev-data.json \\
        > analytics/detectors/dc_curve_floor.json

A test recomputes it from that file, when present, and compares. Nothing on the detection path
imports this module.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from analytics.batch import FloatArray

SOC_BIN_PCT = 5
N_SOC_BINS = 20

# Above this SoC the floor is 0 by choice: published curves fall to 2-11 % of their peak there
# (the lowest keeps what they show), so nothing can be told from the car.
NO_FLOOR_FROM_SOC_PCT = 70

SOURCE = (
    "open-ev-data by Chargeprice (github.com/chargeprice/open-ev-data), data/ev-data.json at"
    " commit e495ff9 (April 2022), MIT licence: its 113 model-specific DC charging curves"
    " (dc_charger.is_default_charging_curve false)"
)

DERIVATION = (
    "Each curve, power over SoC with its published points joined by straight lines, is read at"
    " every whole percent of SoC from 0 to 99; at each, its power over the highest power it drew"
    " at that SoC or below (its peak so far). The bin from soc_from_pct holds the whole percents"
    " soc_from_pct to soc_to_pct - 1; 'lowest' is the least such share over the bin's percents"
    " and all the curves (4 decimals), 'set_by' the models whose curves reach it, and 'floor' is"
    f" 'lowest' rounded to the nearest hundredth, or 0 from {NO_FLOOR_FROM_SOC_PCT} % SoC on"
    " (there curves fall anywhere, so nothing can be told from the car)."
)


# early_taper's step (a sudden fall held for a while) counts only where no published curve falls
# as far over as much SoC: a fall to under 1 - STEP_DROP of the highest power within a span of
# SoC before. The detector compares readings at most 5 % of SoC apart, or 10 % (a fast car's
# derate that takes a few minutes to settle spans that much); SoC reported in whole percents
# hides up to 1 % more, so the curves are searched over 6 and 11 %.
STEP_DROP = 0.38
STEP_SPANS_PCT = (5.0, 10.0)  # as the detector compares them
# Falls are also looked for over wider spans: on a station sampling every 5-15 min a fast car
# gains 12-20 % of SoC between two readings, and a derate then shows as one fall that wide; at
# 15 min a 150 kW car on a 60 kWh battery gains over 60 % (an independently written fleet, seed
# 327: 96 kW at 13 % SoC, 26 kW at 45 %). Each wide span is a tier of its own, so that a fall
# over 20 % is not judged by what curves do over 60 %.
WIDE_SPANS_PCT = (20.0, 60.0)
DEEP_SPANS_PCT = (*STEP_SPANS_PCT, *WIDE_SPANS_PCT)
STEP_HIDDEN_PCT = 1.0  # hidden by whole-percent SoC
STEP_GRID_PCT = 0.1  # curves read every 0.1 % of SoC for the step
# How far below the first such fall a step must be complete: 1 % for the fallen reading's own
# whole-percent SoC, and 2 % for a car's reported SoC against the SoC its curve was published at
# (curves are measured in whole percents; a reported SoC lags the energy just taken by a reading
# or so, 1-2 % at DC rates on a small battery).
STEP_MARGIN_PCT = 3.0

# However large its battery, a step's fall is not asked to be complete beyond this SoC: past 70 %
# published curves fall anywhere (the band's floor is 0 there, NO_FLOOR_FROM_SOC_PCT), and the
# curves of cars newer than the data are not known.
STEP_CAP_SOC_PCT = NO_FLOOR_FROM_SOC_PCT

BY_CAPACITY_DERIVATION = (
    "A car's battery is at least as large as its session shows (early_taper estimates a lower"
    " bound from the energy delivered over the SoC gained), and the curves of cars with smaller"
    " usable_battery_size cannot be its own. 'by_capacity' rows: 'from_kwh' is a usable capacity"
    " of the data; 'complete_below_soc_pct' is the tier's limit computed as above over the curves"
    " of cars of at least that capacity ('uncapped_soc_pct', 'set_by'), capped at"
    f" {STEP_CAP_SOC_PCT} % (past it curves fall anywhere, and newer cars are not in the data);"
    " a row is written where the limit changes, from the smallest battery up."
)

# A deep step: a fall to under this share of the highest power just before. Before 75 % SoC no
# published curve falls to under half of the highest power it drew over the 11 % of SoC before
# (the E-Traveller comes to 0.50 at 74 %, the Corsa-e to 0.51 at 73 %, the e-208 family's step
# at 68.8 % to 0.52, 27 of 52 kW); 0.45 leaves a tenth of that for the noise of the two readings
# compared. Such a fall counts when complete below the cap (70 %) whatever the battery: the first
# published curves to fall that deep do so at 75.6 % (the Ioniq, over 11 % of SoC) and 79.9 %
# (the Polestar 2, over 6 %).
DEEP_KEEP = 0.45

DEEP_DERIVATION = (
    "As 'derivation', for a fall to under 'keep' of the highest power in the span before:"
    " 'complete_below_soc_pct' is the first such SoC less the same margin, capped at"
    f" {STEP_CAP_SOC_PCT} %."
)

STEP_DERIVATION = (
    f"Each curve, read every {STEP_GRID_PCT} % of SoC (straight lines between its published"
    " points): at each SoC, its power over the highest power it drew in the span of SoC before"
    f" ('soc_span_pct' as compared, plus {STEP_HIDDEN_PCT:g} % hidden by whole-percent SoC)."
    " 'first_fallen_soc_pct' is the lowest SoC where some curve is under"
    f" {1 - STEP_DROP:.2f} of that ('set_by'); 'complete_below_soc_pct' is"
    f" {STEP_MARGIN_PCT:g} % lower (whole-percent SoC, and a car's reported SoC against the SoC"
    " its curve was published at): a fall of early_taper's step over that span must be complete"
    " (its lower reading) below it."
)


def step_limits(cars: list[dict[str, Any]]) -> dict[str, Any]:
    """Where published curves first fall as far as early_taper's step, per span of SoC
    (``STEP_DERIVATION``)."""
    soc = np.round(np.arange(0.0, 100.0 + STEP_GRID_PCT / 2, STEP_GRID_PCT), 1)
    powers = []
    for car in cars:  # a hundred or so published curves, off the hot path
        points = car["dc_charger"]["charging_curve"]
        at_pct = [q["percentage"] for q in points]
        powers.append(np.interp(soc, at_pct, [q["power"] for q in points]))
    usable = np.array([float(car.get("usable_battery_size") or 0.0) for car in cars])
    tiers = []
    for span in STEP_SPANS_PCT:
        first = _first_fallen(powers, soc, span, 1.0 - STEP_DROP)
        lowest = float(first.min())
        tiers.append(
            {
                "soc_span_pct": span,
                "first_fallen_soc_pct": lowest,
                "complete_below_soc_pct": round(lowest - STEP_MARGIN_PCT, 1),
                "set_by": _models(cars, first == lowest),
                "by_capacity": _by_capacity(cars, usable, first),
            }
        )
    # the step over the wide spans too: a fall that wide between two readings is judged by the
    # narrowest of them that holds it (early_taper's ``_add_wide_falls``)
    wide = [_capped_tier(cars, powers, soc, span, 1.0 - STEP_DROP) for span in WIDE_SPANS_PCT]
    deep = [_capped_tier(cars, powers, soc, span, DEEP_KEEP) for span in DEEP_SPANS_PCT]
    return {
        "drop": STEP_DROP,
        "tiers": tiers,
        "wide_tiers": wide,
        "derivation": STEP_DERIVATION,
        "by_capacity_derivation": BY_CAPACITY_DERIVATION,
        "deep": {"keep": DEEP_KEEP, "tiers": deep, "derivation": DEEP_DERIVATION},
    }


def _capped_tier(
    cars: list[dict[str, Any]], powers: list[FloatArray], soc: FloatArray, span: float, keep: float
) -> dict[str, Any]:
    """The tier of falls to under ``keep`` over ``span`` % of SoC: where a curve first falls
    that far, less the margin, capped at ``STEP_CAP_SOC_PCT``."""
    first = _first_fallen(powers, soc, span, keep)
    lowest = float(first.min())
    return {
        "soc_span_pct": span,
        "first_fallen_soc_pct": lowest,
        "complete_below_soc_pct": min(round(lowest - STEP_MARGIN_PCT, 1), float(STEP_CAP_SOC_PCT)),
        "set_by": _models(cars, first == lowest),
    }


def _first_fallen(
    powers: list[FloatArray], soc: FloatArray, span: float, keep: float
) -> FloatArray:
    """Per curve: the lowest SoC where it draws under ``keep`` of the highest power it drew in
    ``span`` % of SoC before (plus ``STEP_HIDDEN_PCT``); inf where it never does."""
    back = round((span + STEP_HIDDEN_PCT) / STEP_GRID_PCT)
    first = np.full(len(powers), np.inf)
    for i, power in enumerate(powers):
        padded = np.concatenate((np.zeros(back), power))
        highest = np.lib.stride_tricks.sliding_window_view(padded, back + 1).max(axis=1)
        fallen = power < keep * highest
        if fallen.any():
            first[i] = soc[np.argmax(fallen)]
    return first


def _models(cars: list[dict[str, Any]], which: np.ndarray) -> list[str]:
    return list(
        dict.fromkeys(f"{cars[i]['brand']} {cars[i]['model']}" for i in np.flatnonzero(which))
    )


def _by_capacity(
    cars: list[dict[str, Any]], usable: FloatArray, first: FloatArray
) -> list[dict[str, Any]]:
    """The tier's limit among the curves of cars with at least each usable capacity
    (``BY_CAPACITY_DERIVATION``): a row where the limit changes, from the smallest battery up."""
    rows: list[dict[str, Any]] = []
    for kwh in np.unique(usable[usable > 0]):
        among = usable >= kwh
        lowest = float(first[among].min())
        uncapped = round(lowest - STEP_MARGIN_PCT, 1)
        limit = min(uncapped, float(STEP_CAP_SOC_PCT))
        if rows and rows[-1]["complete_below_soc_pct"] == limit:
            continue
        rows.append(
            {
                "from_kwh": float(kwh),
                "complete_below_soc_pct": limit,
                "uncapped_soc_pct": uncapped if lowest < np.inf else None,
                "set_by": _models(cars, among & (first == lowest)) if lowest < np.inf else [],
            }
        )
    return rows


REBOUND_DERIVATION = (
    "Each curve, power over SoC with its published points joined by straight lines, is read at"
    " every whole percent of SoC from 0 to 99; for every pair s1 < s2, its power at s2 over the"
    " least power it draws from s1 to s2: how far a car climbs back out of its own lowest point"
    " further up its curve. 'largest' is the greatest over all pairs and all the curves (4"
    " decimals, rounded up), 'set_by' the models whose curves reach it, with the pair of SoC and"
    " the powers. Typing errors are corrected first (CURVE_ERRATA). The largest is a gentle"
    " rise over half the SoC range, not a dip and recovery: no published curve climbs back"
    " from a fall by more than a few %."
)


def rebound_limit(cars: list[dict[str, Any]]) -> dict[str, Any]:
    """The most any published curve draws at a higher SoC over the least it drew since a lower
    one (``REBOUND_DERIVATION``): early_taper's limit for a dip the session climbs out of."""
    soc = np.arange(float(N_SOC_BINS * SOC_BIN_PCT))
    ratios = np.empty(len(cars))
    pairs: list[tuple[int, int, float, float]] = []
    for i, car in enumerate(cars):  # a hundred or so published curves, off the hot path
        points = car["dc_charger"]["charging_curve"]
        power = np.interp(soc, [q["percentage"] for q in points], [q["power"] for q in points])
        best = (0.0, 0, 0)
        for s1 in range(soc.size):
            lowest = np.minimum.accumulate(power[s1:])
            positive = lowest > 0  # a curve at 0 kW (at 100 %) is left out: nothing to scale
            if not positive.any():
                continue
            ratio = np.where(positive, power[s1:] / np.where(positive, lowest, 1.0), 0.0)
            k = int(np.argmax(ratio))
            if ratio[k] > best[0]:
                best = (float(ratio[k]), s1, s1 + k)
        ratios[i] = best[0]
        _, s1, s2 = best
        pairs.append((s1, s2, float(power[s1 : s2 + 1].min()), float(power[s2])))
    largest = float(ratios.max())
    at = np.flatnonzero(ratios == largest).tolist()
    return {
        "largest": float(np.ceil(largest * 1e4) / 1e4),
        "set_by": [
            {
                "model": f"{cars[i]['brand']} {cars[i]['model']}",
                "from_soc_pct": pairs[i][0],
                "to_soc_pct": pairs[i][1],
                "lowest_kw": pairs[i][2],
                "then_kw": pairs[i][3],
            }
            for i in at
        ],
        "derivation": REBOUND_DERIVATION,
    }


# Published points that are typing errors, by vehicle id: (SoC %, what was published, what is
# meant). The Opel Corsa-e "7,2 kW-AC" lists 2.0 kW at 73 % where its "11 kW-AC" twin (the same
# battery and DC charger: the onboard AC charger does not touch the DC path) lists 27.0 kW, and
# its own next point is 27.0 kW at 83 %: a curve that falls from 41 kW to 2 and climbs back to
# 27 over 10 % of SoC is no battery's. Left in, it would set the AC floor at 70-80 % to 2 kW.
CURVE_ERRATA: dict[str, tuple[tuple[float, float, float], ...]] = {
    "1cec7821-632f-4f17-8a58-644b6ab23f44": ((73, 2.0, 27.0),),
}


def model_curves(ev_data: dict[str, Any]) -> list[dict[str, Any]]:
    """The vehicles of ``ev_data`` with a model-specific DC charging curve, in file order, with
    the published typing errors of ``CURVE_ERRATA`` corrected (in copies)."""
    cars = [
        car
        for car in ev_data["data"]
        if (car.get("dc_charger") or {}).get("charging_curve")
        and car["dc_charger"].get("is_default_charging_curve") is False
    ]
    out = []
    for car in cars:
        errata = CURVE_ERRATA.get(car.get("id", ""))
        if errata:
            points = [dict(q) for q in car["dc_charger"]["charging_curve"]]
            for soc, published, meant in errata:
                for q in points:
                    if q["percentage"] == soc and q["power"] == published:
                        q["power"] = meant
            car = {**car, "dc_charger": {**car["dc_charger"], "charging_curve": points}}
        out.append(car)
    return out


def bin_shares(cars: list[dict[str, Any]]) -> FloatArray:
    """Per car and 5 % SoC bin, ``(len(cars), N_SOC_BINS)``: the least share of its peak so far
    that the car's curve draws at the bin's whole percents of SoC (read by straight lines
    between its published points)."""
    soc = np.arange(float(N_SOC_BINS * SOC_BIN_PCT))
    shares = np.empty((len(cars), soc.size))
    for i, car in enumerate(cars):  # one published curve (a hundred or so), off the hot path
        points = car["dc_charger"]["charging_curve"]
        at_pct = [p["percentage"] for p in points]
        power = np.interp(soc, at_pct, [p["power"] for p in points])
        shares[i] = power / np.maximum.accumulate(power)
    return np.asarray(shares.reshape(len(cars), N_SOC_BINS, SOC_BIN_PCT).min(axis=2))


AC_DERIVATION = (
    "On AC the onboard charger, not the battery, sets the power: a car draws its AC level L"
    " (what the session reached, capped by the offer) until the battery accepts less, which"
    " its DC curve bounds from below (at an AC rate, a few kW, the constant-voltage phase"
    " starts later than at a DC rate, so the DC curve is the lower bound). So an AC car's"
    " power at SoC s is at least min(L, DC-curve kW(s)), and its share of L at least"
    " min(1, DC-curve kW(s) / L). 'ac_kw' is the least kW any of the curves draws at the whole"
    " percents soc_from_pct to soc_to_pct (inclusive: a whole-percent report hides up to 1 %"
    " more, so '99 %' may be 99.9 % and read where the curve reaches 100 %), read as above;"
    " early_taper's AC floor in the bin is min(1, ac_kw / L)."
)


def ac_kw_floor(cars: list[dict[str, Any]]) -> tuple[FloatArray, list[list[str]]]:
    """Per 5 % SoC bin: the least power in kW that any car's DC curve draws over the bin's
    whole percents and the next one (``AC_DERIVATION``), and the models that draw it."""
    soc = np.arange(float(N_SOC_BINS * SOC_BIN_PCT + 1))
    powers = np.empty((len(cars), soc.size))
    for i, car in enumerate(cars):  # one published curve (a hundred or so), off the hot path
        points = car["dc_charger"]["charging_curve"]
        at_pct = [p["percentage"] for p in points]
        powers[i] = np.interp(soc, at_pct, [p["power"] for p in points])
    lowest = np.empty(N_SOC_BINS)
    set_by = []
    for k in range(N_SOC_BINS):
        window = powers[:, k * SOC_BIN_PCT : (k + 1) * SOC_BIN_PCT + 1].min(axis=1)
        lowest[k] = round(float(window.min()), 2)
        at = np.flatnonzero(np.round(window, 2) == lowest[k]).tolist()
        set_by.append(list(dict.fromkeys(f"{cars[i]['brand']} {cars[i]['model']}" for i in at)))
    return lowest, set_by


def derive_ac_kw_floor(ev_data: dict[str, Any]) -> FloatArray:
    """``AC_KW_FLOOR`` of early_taper from the open-ev-data file (see ``AC_DERIVATION``)."""
    return ac_kw_floor(model_curves(ev_data))[0]


def derive_dc_curve_floor(ev_data: dict[str, Any]) -> FloatArray:
    """``DC_CURVE_FLOOR`` from the open-ev-data file (see ``DERIVATION``)."""
    return _floor(bin_shares(model_curves(ev_data)).min(axis=0))


def _floor(lowest: FloatArray) -> FloatArray:
    floor = np.round(lowest, 2)
    floor[np.arange(N_SOC_BINS) * SOC_BIN_PCT >= NO_FLOOR_FROM_SOC_PCT] = 0.0
    return np.asarray(floor)


def floor_table(ev_data: dict[str, Any]) -> dict[str, Any]:
    """The content of ``dc_curve_floor.json``: the floor per bin, with its source and how it
    was derived."""
    cars = model_curves(ev_data)
    shares = bin_shares(cars)
    lowest = shares.min(axis=0)
    floor = _floor(lowest)
    ac_kw, ac_set_by = ac_kw_floor(cars)
    bins = []
    for k in range(N_SOC_BINS):
        at_lowest = np.flatnonzero(shares[:, k] == lowest[k]).tolist()
        models = dict.fromkeys(f"{cars[i]['brand']} {cars[i]['model']}" for i in at_lowest)
        bins.append(
            {
                "soc_from_pct": k * SOC_BIN_PCT,
                "soc_to_pct": (k + 1) * SOC_BIN_PCT,
                "floor": float(floor[k]),
                "lowest": round(float(lowest[k]), 4),
                "set_by": list(models),
                "ac_kw": float(ac_kw[k]),
                "ac_set_by": ac_set_by[k],
            }
        )
    return {
        "about": (
            "DC_CURVE_FLOOR of analytics/detectors/early_taper.py: per 5 % SoC bin, the least"
            " share of the highest power reached so far that a published DC charging curve"
            " draws; and AC_KW_FLOOR: the least kW one draws (for AC cars, whose onboard"
            " charger sets the power). Made by analytics/detectors/curve_floor.py; do not edit"
            " by hand."
        ),
        "source": SOURCE,
        "errata": {
            car_id: [{"soc_pct": a, "published_kw": b, "meant_kw": c} for a, b, c in rows]
            for car_id, rows in CURVE_ERRATA.items()
        },
        "curves": len(cars),
        "derivation": DERIVATION,
        "ac_derivation": AC_DERIVATION,
        "step": step_limits(cars),
        "rebound": rebound_limit(cars),
        "bins": bins,
    }


def to_json(table: dict[str, Any]) -> str:
    """``table`` as JSON text, one bin a line (so a change reads as a one-line diff)."""
    lines = ["{"]
    for key, value in table.items():
        if key != "bins":
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    rows = [f"    {json.dumps(b, ensure_ascii=False)}" for b in table["bins"]]
    lines.extend(['  "bins": [', ",\n".join(rows), "  ]", "}"])
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m analytics.detectors.curve_floor EV-DATA.json\n")
        return 2
    ev_data = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    sys.stdout.write(to_json(floor_table(ev_data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
