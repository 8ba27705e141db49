"""bench/field_fleet.py, the third labelled fleet: a tiny fleet passes its own --check, carries
every anomaly kind of CONTRACTS section 3 on a labelled session, and is the same bytes for the
same seed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chargewatch.kinds import AnomalyKind

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "field_fleet.py"
FILES = ("events.jsonl", "labels.jsonl", "notes.jsonl", "stations.csv")
KINDS = {kind.value for kind in AnomalyKind}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240
    )


def _generate(out: Path, seed: int = 7) -> Path:
    proc = _run(
        "--stations", "30", "--hours", "12", "--seed", str(seed), "--anomaly-rate", "0.5",
        "--out", str(out / "events.jsonl"), "--labels", str(out / "labels.jsonl"),
        "--stations-out", str(out / "stations.csv"), "--notes", str(out / "notes.jsonl"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("field_fleet"))


def _labels(directory: Path) -> list[dict[str, object]]:
    with (directory / "labels.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_check_passes(fleet: Path) -> None:
    proc = _run("--check", str(fleet))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK")


def test_every_kind_is_labelled_on_a_session(fleet: Path) -> None:
    labels = _labels(fleet)
    assert {lab["kind"] for lab in labels if lab["session_id"] is not None} == KINDS
    with (fleet / "notes.jsonl").open(encoding="utf-8") as fh:
        noted = {json.loads(line)["session_id"] for line in fh}
    assert {lab["session_id"] for lab in labels} <= noted


def test_same_seed_same_bytes(fleet: Path, tmp_path: Path) -> None:
    again = _generate(tmp_path)
    for name in FILES:
        assert (again / name).read_bytes() == (fleet / name).read_bytes(), name


def test_check_names_a_label_that_does_not_hold(fleet: Path, tmp_path: Path) -> None:
    for name in FILES:
        shutil.copy(fleet / name, tmp_path / name)
    labelled = {lab["session_id"] for lab in _labels(fleet)}
    with (fleet / "events.jsonl").open(encoding="utf-8") as fh:
        starts = [json.loads(line) for line in fh if '"session_start"' in line]
    normal = next(ev for ev in starts if ev["session_id"] not in labelled)
    bogus = {
        "session_id": normal["session_id"],
        "station_id": normal["station_id"],
        "connector_id": normal["connector_id"],
        "kind": "stall",
        "start": normal["ts"],
        "end": normal["ts"],
    }
    with (tmp_path / "labels.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(bogus) + "\n")
    proc = _run("--check", str(tmp_path))
    assert proc.returncode != 0
    assert f"label stall on session {normal['session_id']}" in proc.stdout
