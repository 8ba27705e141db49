"""The outside fleet (bench/outside_fleet.py): deterministic for a seed, every line an event
the decoder takes, and its own checker (``--check``) finds every label meets section 3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from chargewatch.events import EventDecoder
from chargewatch.kinds import AnomalyKind

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "outside_fleet.py"
EV_DATA = ROOT.parent / "shared" / "data" / "ev-curves" / "ev-data.json"  # ../shared, as in CI

pytestmark = pytest.mark.skipif(not EV_DATA.exists(), reason="open-ev-data file not on this host")


def generate(folder: Path) -> tuple[bytes, bytes]:
    folder.mkdir()
    files = {name: folder / f"{name}.jsonl" for name in ("events", "labels", "notes")}
    args = ["--stations", "12", "--hours", "6", "--seed", "5", "--anomaly-rate", "0.5"]
    args += ["--ev-data", str(EV_DATA), "--out", str(files["events"])]
    args += ["--labels", str(files["labels"]), "--notes", str(files["notes"])]
    args += ["--stations-out", str(folder / "stations.csv")]
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True)
    return files["events"].read_bytes(), files["labels"].read_bytes()


def test_a_seed_gives_the_same_fleet_every_line_valid_and_checked(tmp_path: Path) -> None:
    events, labels = generate(tmp_path / "a")
    assert (events, labels) == generate(tmp_path / "b")
    decoder = EventDecoder(lambda tag: tag)
    lines = events.splitlines()
    assert len(lines) > 100
    for line in lines:
        decoder.decode_line(line)  # raises on any line CONTRACTS section 1 rejects
    kinds = {orjson.loads(line)["kind"] for line in labels.splitlines()}
    assert kinds and kinds <= {str(kind) for kind in AnomalyKind}
    check = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", str(tmp_path / "a")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
