"""What the benchmarks share: a simulated fleet file, made by the real command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def simulate_fleet(folder: Path, stations: int, hours: float, *, seed: int) -> Path:
    """Write a simulated fleet into ``folder`` with ``chargewatch simulate``; the events file."""
    events = folder / "fleet.jsonl"
    command = [sys.executable, "-m", "chargewatch", "simulate", "--stations", str(stations)]
    command += ["--hours", str(hours), "--seed", str(seed), "--out", str(events)]
    command += ["--labels", str(folder / "labels.jsonl")]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return events
