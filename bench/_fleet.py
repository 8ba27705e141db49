"""What the benchmarks share: a simulated fleet file, made by the real command, and that file
loaded into an InfluxDB with ``chargewatch ingest``'s code."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from chargewatch.influx import BatchWriter, InfluxClient


def simulate_fleet(
    folder: Path, stations: int, hours: float, *, seed: int, start: str | None = None
) -> Path:
    """Write a simulated fleet into ``folder`` with ``chargewatch simulate`` (from ``start``,
    else the command's default); the events file."""
    events = folder / "fleet.jsonl"
    command = [sys.executable, "-m", "chargewatch", "simulate", "--stations", str(stations)]
    command += ["--hours", str(hours), "--seed", str(seed), "--out", str(events)]
    command += ["--labels", str(folder / "labels.jsonl")]
    if start is not None:
        command += ["--start", start]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return events


def load_fleet(events: Path, client: InfluxClient, key: bytes) -> float:
    """Ingest ``events`` into ``client``'s database as ``chargewatch ingest`` does, id tags
    pseudonymized with ``key``; the seconds it took."""
    from chargewatch.events import EventDecoder
    from ingest.files import ingest_stream
    from ingest.pseudonym import Pseudonymizer

    began = time.perf_counter()
    with events.open("rb") as stream, BatchWriter(client) as writer:
        ingest_stream(
            stream,
            decoder=EventDecoder(Pseudonymizer(key)),
            sink=writer,
            on_reject=lambda rejection: None,
        )
    return time.perf_counter() - began
