"""What operators' verdicts cost the read API and the export, on a SQLite state database.

A page of ``GET /api/v1/flags`` (1,000 flags, the largest) looks up the latest verdict of each
flag: timed against a table of 0 verdicts (the baseline, measured in the same run) and of
100,000 (a year of a large network's operators judging a few hundred flags a day, some twice).
Then the export's work (latest verdicts of every flag, made into labels) over those 100,000.

    .venv/bin/python bench/verdicts.py
"""

from __future__ import annotations

import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from chargewatch.flags import Flag
from chargewatch.kinds import AnomalyKind
from chargewatch.state import StateStore
from chargewatch.verdicts import (
    FlagVerdictEntry,
    _digest,
    flag_id,
    labels_from_verdicts,
    latest_verdicts,
    latest_verdicts_between,
)

VERDICTS = 100_000
PAGE = 1_000
REPEAT = 5
KINDS = list(AnomalyKind)
DAY_NS = 86_400 * 10**9


def flags(count: int, rng: random.Random) -> list[Flag]:
    out = []
    for n in range(count):
        start = 1_764_000_000 * 10**9 + rng.randrange(365 * DAY_NS)
        kind = KINDS[n % len(KINDS)].value
        out.append(Flag(f"s-{n}", f"CP-{n % 500}", 1, kind, 0.9, start, start + 600 * 10**9, ""))
    return out


def fill(store: StateStore, judged: list[Flag], rng: random.Random) -> None:
    rows = []
    for n, flag in enumerate(judged):
        ident = flag_id(flag)
        verdict = ("confirmed", "false_alarm", "wrong_kind")[n % 3]
        right = "stall" if flag.kind != "stall" else "early_taper"  # the API refuses its own
        rows.append(
            {
                "flag_digest": _digest(ident),
                "flag_id": ident,
                "verdict": verdict,
                "right_kind": right if verdict == "wrong_kind" else None,
                "comment": "seen on site",
                "who": "ana",
                "key_id": None,
                "created_at": datetime.now(UTC),
                "session_id": flag.session_id,
                "station_id": flag.station_id,
                "connector_id": flag.connector_id,
                "kind": flag.kind,
                "start_ns": flag.start_ns,
                "end_ns": flag.end_ns,
            }
        )
    with store.engine.begin() as connection:
        connection.execute(insert(FlagVerdictEntry), rows)


def best_of(action: object) -> float:
    times = []
    for _ in range(REPEAT):
        began = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    rng = random.Random(7)
    judged = flags(VERDICTS, rng)
    page = [flag_id(f) for f in rng.sample(judged, PAGE)]
    with tempfile.TemporaryDirectory() as folder:
        store = StateStore(f"sqlite:///{Path(folder) / 'state.db'}")
        latest_verdicts(store, page[:1])  # creates the table
        empty_s = best_of(lambda: latest_verdicts(store, page))
        fill(store, judged, rng)
        full_s = best_of(lambda: latest_verdicts(store, page))
        began = time.perf_counter()
        made = labels_from_verdicts(latest_verdicts_between(store))
        export_s = time.perf_counter() - began
        store.close()
    print(f"latest verdicts of a {PAGE}-flag page, 0 verdicts stored: {empty_s * 1e3:.1f} ms")
    print(
        f"latest verdicts of a {PAGE}-flag page, {VERDICTS:,} stored: {full_s * 1e3:.1f} ms "
        f"({full_s / empty_s:.1f}x the empty table)"
    )
    print(
        f"export of {VERDICTS:,} verdicts: {export_s:.2f} s "
        f"({len(made.labels):,} labels, {len(made.negatives):,} negatives)"
    )


if __name__ == "__main__":
    main()
