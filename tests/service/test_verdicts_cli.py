"""``chargewatch verdicts export``: verdicts in a real state database become labels that follow
CONTRACTS.md section 2 line for line, and negatives; ``chargewatch evaluate`` takes the labels
as they are. (The API that stores verdicts is tested in ``tests/api/test_verdicts``.)"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from chargewatch.events import format_ts, parse_ts
from chargewatch.flags import Flag, write_flags
from chargewatch.kinds import AnomalyKind
from chargewatch.state import StateStore
from chargewatch.verdicts import Verdict, record_verdict

T0 = parse_ts("2026-11-23T10:00:00Z")
MIN = 60 * 1_000_000_000
LABEL_KEYS = ["session_id", "station_id", "connector_id", "kind", "start", "end"]


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "chargewatch", *args],
        env={**env, "CHARGEWATCH_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def flag(session: str | None, kind: str, start_min: int, station: str = "S-1") -> Flag:
    start = T0 + start_min * MIN
    return Flag(session, station, 1, kind, 0.9, start, start + 15 * MIN, f"{kind} seen")


STALL = flag("s-1", "stall", 0)
TAPER = flag("s-2", "early_taper", 60)
JUMP = flag("s-3", "meter_jump", 120)
CHANGED_MIND = flag("s-4", "data_gap", 180)
ORPHAN = flag(None, "unauthorized_energy", 240, station="S-2")
LATER = flag("s-5", "stall", 60 * 24)  # the next day: outside --until below
FLAGS = [STALL, TAPER, JUMP, CHANGED_MIND, ORPHAN, LATER]


@pytest.fixture
def judged(tmp_path: Path) -> Path:
    """A data directory whose state database holds a verdict on each flag of ``FLAGS``."""
    data = tmp_path / "var"
    store = StateStore(f"sqlite:///{data / 'state.db'}")
    at = datetime(2026, 11, 24, 9, tzinfo=UTC)

    def judge(f: Flag, verdict: Verdict, right: str | None = None, minutes: int = 0) -> None:
        record_verdict(
            store,
            f,
            verdict,
            right_kind=right,
            comment="",
            who="Ana",
            key_id=None,
            at=at + timedelta(minutes=minutes),
        )

    try:
        judge(STALL, Verdict.CONFIRMED)
        judge(TAPER, Verdict.FALSE_ALARM)
        judge(JUMP, Verdict.WRONG_KIND, AnomalyKind.METER_STUCK.value)
        judge(CHANGED_MIND, Verdict.CONFIRMED)
        judge(CHANGED_MIND, Verdict.FALSE_ALARM, minutes=5)  # the latest wins
        judge(ORPHAN, Verdict.CONFIRMED)
        judge(LATER, Verdict.CONFIRMED)
    finally:
        store.close()
    return data


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_export_writes_contract_labels_and_negatives(judged: Path, tmp_path: Path) -> None:
    labels, negatives = tmp_path / "labels.jsonl", tmp_path / "negatives.jsonl"
    done = run(
        judged,
        *("verdicts", "export", "--out", str(labels), "--negatives", str(negatives)),
        *("--since", "2026-11-23T00:00:00Z", "--until", "2026-11-24T00:00:00Z"),
    )
    assert done.returncode == 0, done.stderr
    assert "3 labels (1 meter_stuck, 1 stall, 1 unauthorized_energy) from 5 judged flags" in (
        done.stdout
    )
    found = lines(labels)
    for line in found:  # CONTRACTS.md section 2, key for key
        assert list(line) == LABEL_KEYS
        assert line["kind"] in set(AnomalyKind)
        assert isinstance(line["connector_id"], int)
        assert parse_ts(line["start"]) <= parse_ts(line["end"])
    assert {(line["session_id"], line["kind"]) for line in found} == {
        ("s-1", "stall"),
        ("s-3", "meter_stuck"),
        (None, "unauthorized_energy"),
    }
    stall = next(line for line in found if line["kind"] == "stall")
    assert (stall["start"], stall["end"]) == (format_ts(STALL.start_ns), format_ts(STALL.end_ns))
    assert {(n["session_id"], n["kind"]) for n in lines(negatives)} == {
        ("s-2", "early_taper"),
        ("s-3", "meter_jump"),
        ("s-4", "data_gap"),
    }


def test_evaluate_takes_the_export(judged: Path, tmp_path: Path) -> None:
    labels, flags_file = tmp_path / "labels.jsonl", tmp_path / "flags.jsonl"
    assert run(judged, "verdicts", "export", "--out", str(labels)).returncode == 0
    assert len(lines(labels)) == 4  # no window: the next day's too
    write_flags(flags_file, FLAGS)
    done = run(judged, "evaluate", "--flags", str(flags_file), "--labels", str(labels), "--json")
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    by_kind = {score["kind"]: score for score in result["kinds"]}
    assert by_kind["stall"]["true_positives"] == 2 and by_kind["stall"]["precision"] == 1.0
    assert by_kind["early_taper"]["precision"] == 0.0  # the false alarm
    assert by_kind["meter_stuck"]["labels"] == 1 and by_kind["meter_stuck"]["recall"] == 0.0


def test_usage_errors(judged: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "labels.jsonl")
    cases = [
        (("--since", "2026-11-24T00:00:00Z", "--until", "2026-11-23T00:00:00Z"), "--until must"),
        (("--since", "yesterday"), "--since"),
        (("--negatives", out), "--negatives must be another file than --out"),
    ]
    for extra, said in cases:
        done = run(judged, "verdicts", "export", "--out", out, *extra)
        assert done.returncode == 2 and said in done.stderr, done.stderr
    missing = run(judged, "verdicts", "export", "--out", str(tmp_path / "no" / "labels.jsonl"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    nowhere = run(tmp_path / "elsewhere", "verdicts", "export", "--out", out)
    assert nowhere.returncode == 2 and "no state database at" in nowhere.stderr
    assert not (tmp_path / "elsewhere").exists()  # a read leaves nothing behind
