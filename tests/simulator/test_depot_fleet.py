"""bench/depot_fleet.py: a small fleet checks clean, carries every kind, and is deterministic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chargewatch.kinds import AnomalyKind

KINDS = {k.value for k in AnomalyKind}
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "depot_fleet.py"


def _generate(out: Path, seed: int = 7) -> subprocess.CompletedProcess[str]:
    out.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable, str(SCRIPT), "--stations", "30", "--hours", "12", "--seed", str(seed),
        "--anomaly-rate", "0.5", "--start", "2026-11-24T00:00:00Z",
        "--out", str(out / "events.jsonl"), "--labels", str(out / "labels.jsonl"),
        "--stations-out", str(out / "stations.csv"), "--notes", str(out / "notes.jsonl"),
    ]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_depot_fleet_checks_clean_and_is_deterministic(tmp_path: Path) -> None:
    first = _generate(tmp_path / "a")
    assert first.returncode == 0, first.stderr
    checked = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", str(tmp_path / "a")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with open(tmp_path / "a" / "labels.jsonl", encoding="utf-8") as fh:
        kinds = {json.loads(line)["kind"] for line in fh}
    assert kinds == KINDS
    second = _generate(tmp_path / "b")
    assert second.returncode == 0, second.stderr
    for name in ("events.jsonl", "labels.jsonl", "stations.csv", "notes.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
