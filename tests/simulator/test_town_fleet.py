"""bench/town_fleet.py, the fifth labelled fleet: a small fleet passes its own --check, carries
every anomaly kind of CONTRACTS section 3, and is the same bytes for the same seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chargewatch.kinds import AnomalyKind

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "town_fleet.py"
FILES = ("events.jsonl", "labels.jsonl", "notes.jsonl", "stations.csv")
KINDS = {k.value for k in AnomalyKind}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def _generate(out: Path, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    proc = _run(
        "--stations", "40", "--hours", "12", "--seed", str(seed), "--anomaly-rate", "0.5",
        "--out", str(out / "events.jsonl"), "--labels", str(out / "labels.jsonl"),
        "--stations-out", str(out / "stations.csv"), "--notes", str(out / "notes.jsonl"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_town_fleet(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _generate(a, 5)
    check = _run("--check", str(a))
    assert check.returncode == 0, check.stdout + check.stderr
    with (a / "labels.jsonl").open(encoding="utf-8") as fh:
        kinds = {json.loads(line)["kind"] for line in fh}
    assert kinds == KINDS
    _generate(b, 5)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
