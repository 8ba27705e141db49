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


HOUR_NS = 3600 * 1_000_000_000


def fleet_span(events: Path) -> tuple[int, int, int]:
    """The span a window over the whole of ``events`` needs (ns, whole hours): from the hour of
    its first receive time to the hour after its last plus the receive-time band (the job's
    last run must see the newest readings settle), the receive times estimated from the
    file's stamps as ``chargewatch ingest`` estimates them (``ReceiveClock.stream_us``, per
    station; a wrong clock's stamps do not move them); and its number of stations."""
    import numpy as np
    import orjson

    from chargewatch.events import parse_ts
    from chargewatch.schema import RX_BAND_NS, ReceiveClock

    stamps: list[int] = []
    codes: list[int] = []
    names: dict[str | None, int] = {}
    with events.open("rb") as stream:
        for line in stream:
            if not line.strip():
                continue
            event = orjson.loads(line)
            stamps.append(parse_ts(event["ts"]))
            codes.append(names.setdefault(event.get("station_id"), len(names)))
    rx_ns = 1000 * ReceiveClock().stream_us(
        np.asarray(stamps, dtype=np.int64),
        stations=(np.asarray(codes, dtype=np.int64), list(names)),
    )
    begin = int(rx_ns.min()) // HOUR_NS * HOUR_NS
    end = -(-(int(rx_ns.max()) + RX_BAND_NS) // HOUR_NS) * HOUR_NS
    return begin, end, sum(1 for name in names if name is not None)


def own_peak_mb() -> float:
    """This process's peak resident memory since its exec (``VmHWM``), in MB. Not the rusage a
    parent reads with ``wait4``, nor ``RUSAGE_SELF``: Linux keeps a process's highest RSS across
    ``exec``, so a child forked from a benchmark that holds the fleet it loaded reports at least
    the benchmark's own size (bench/window.py on a fleet of 851 k events: 798 MB for all three
    of its modes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
