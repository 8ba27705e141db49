"""Where soc_inconsistent's plausible battery sizes come from: published usable capacities.

``battery_capacity.json`` (beside this module, read by ``battery``) is what ``capacity_table``
makes of the open-ev-data file of Chargeprice (MIT licence; a copy is in
``../shared/data/ev-curves``, not in this repository). To make it again::

    .venv/bin/python -m analytics.detectors.battery_capacity \\
        ../shared/data/ev-curves/ev-data.json > analytics/detectors/battery_capacity.json

It holds, over every vehicle of the file (cars, quadricycles, motorbikes; battery-electric and
plug-in hybrids alike: anything that may plug into a charger), the smallest and the largest
usable capacity, and a step table: for a power drawn, the smallest usable capacity among the
vehicles that can draw at least that much (a 5.5 kWh quadricycle cannot take 150 kW). A test
recomputes it from that file, when present, and compares. Nothing on the detection path
imports this module.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SOURCE = (
    "open-ev-data by Chargeprice (github.com/chargeprice/open-ev-data), data/ev-data.json at"
    " commit e495ff9 (April 2022), MIT licence: usable_battery_size, ac_charger.max_power,"
    " dc_charger.max_power and the peak of dc_charger.charging_curve of every vehicle"
)

DERIVATION = (
    "Each vehicle's most power is the highest of its AC limit, its DC limit and the peak of its"
    " DC curve (kW). 'smallest_kwh' and 'largest_kwh' are the least and the greatest"
    " usable_battery_size of all vehicles. 'floor' has one row per distinct most power P (kW,"
    " ascending): the least usable_battery_size among the vehicles whose most power is P or"
    " more, so a car seen drawing up to P has at least that battery (the rows never fall)."
)


def most_power_kw(car: dict[str, Any]) -> float:
    """The most power a vehicle can draw, AC or DC, by its published figures (kW)."""
    ac = car.get("ac_charger") or {}
    dc = car.get("dc_charger") or {}
    curve = dc.get("charging_curve") or []
    values = [ac.get("max_power") or 0.0, dc.get("max_power") or 0.0]
    values += [p.get("power") or 0.0 for p in curve]
    return float(max(values))


def capacity_table(ev_data: dict[str, Any]) -> dict[str, Any]:
    """The content of ``battery_capacity.json`` (see ``DERIVATION``)."""
    cars = [c for c in ev_data["data"] if (c.get("usable_battery_size") or 0) > 0]
    pairs = sorted((most_power_kw(c), float(c["usable_battery_size"])) for c in cars)
    powers = sorted({p for p, _ in pairs})
    floor = []
    for power in powers:
        least = min(kwh for p, kwh in pairs if p >= power)
        floor.append([power, least])
    smallest = min(kwh for _, kwh in pairs)
    largest = max(kwh for _, kwh in pairs)
    set_by = [
        f"{c['brand']} {c['model']} {c.get('variant') or ''}".strip()
        for c in cars
        if float(c["usable_battery_size"]) in (smallest, largest)
    ]
    return {
        "about": (
            "Plausible usable battery capacities for soc_inconsistent"
            " (analytics/detectors/battery.py). Made by analytics/detectors/battery_capacity.py;"
            " do not edit by hand."
        ),
        "source": SOURCE,
        "vehicles": len(cars),
        "derivation": DERIVATION,
        "smallest_kwh": smallest,
        "largest_kwh": largest,
        "extremes_set_by": set_by,
        "floor": floor,
    }


def to_json(table: dict[str, Any]) -> str:
    """``table`` as JSON text, one floor row a line (a change reads as a one-line diff)."""
    lines = ["{"]
    for key, value in table.items():
        if key != "floor":
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    rows = [f"    {json.dumps(row)}" for row in table["floor"]]
    lines.extend(['  "floor": [', ",\n".join(rows), "  ]", "}"])
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m analytics.detectors.battery_capacity EV-DATA.json\n")
        return 2
    ev_data = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    sys.stdout.write(to_json(capacity_table(ev_data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
