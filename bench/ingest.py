"""Benchmark: `chargewatch ingest` against what InfluxDB itself costs.

The floor is the same points, formatted as line protocol and (when gzip is on) compressed in
advance, posted straight to the same InfluxDB by one writer in the same batches. chargewatch is
the real command in a subprocess (start-up included) reading the simulated JSON Lines file.
Both write into fresh databases of one private InfluxDB; each is run twice, alternating (the
floor first in odd rounds, the command first in even ones, so neither always follows the other's
compactions), and the best of each is kept (the command's bytecode cached, after a first run on
an empty file, as when installed; a second run on it is timed and printed: the start-up that no
file size pays less of). Prints readings per second for both, their ratio (target <= 1.3), the
ingest process's peak memory and the load average (the machine may be shared); and, without
InfluxDB, the CPU time of turning the file into line protocol (ChunkEncoder) against parsing its
lines with orjson, with how many readings took the columnar path. The fleet's stations write
their messages each in their own valid way (numeric strings, zone offsets, second to microsecond
stamps, UUID and integer ids, extra keys, nulls: ``simulator/output.py``), all of which belong on
the columnar path.

    .venv/bin/python bench/ingest.py                      # 560 stations x 24 h, > 1 M readings
    .venv/bin/python bench/ingest.py --stations 100 --hours 6   # a quick look
    .venv/bin/python bench/ingest.py --events fleet.jsonl       # a given file
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path and its name would shadow the `ingest` package.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _BENCH]

import argparse
import gzip
import io
import os
import re
import resource
import socket
import subprocess
import tempfile
import time
import uuid

import httpx
import orjson

from bench._fleet import simulate_fleet
from chargewatch.events import EventDecoder, iter_jsonl, iter_jsonl_chunks
from chargewatch.influx import InfluxClient, LocalInfluxd, find_or_install_influxd
from chargewatch.schema import LineFormatter
from ingest.encode import ChunkEncoder
from ingest.files import CHUNK_LINES
from ingest.pseudonym import Pseudonymizer

# Runs the CLI and reports its own high-water RSS. A fork's rusage would count the pages it
# shared with this (large) benchmark process before exec, so the figure is read in the child.
_REPORT_PEAK = """
import atexit, sys
def report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("peak_kb " + line.split()[1] + "\\n")
atexit.register(report)
from service.cli import main
sys.argv = ["chargewatch", *sys.argv[1:]]
main()
"""
_SERIES_END = re.compile(r"(?<!\\) ")
WINDOW = "time >= '1677-09-22T00:00:00Z' AND time <= '2262-04-10T00:00:00Z'"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def formatted_batches(
    events: Path, batch_lines: int, compress: bool
) -> tuple[list[bytes], int, int]:
    """The file's points as ready-to-post bodies, and the number of readings and of distinct
    points (a file may repeat an event: InfluxDB keeps one point of a series and time)."""
    decoder = EventDecoder(Pseudonymizer(b"bench-key-0123456789abcdef"))
    formatter = LineFormatter()
    bodies: list[bytes] = []
    batch: list[str] = []
    readings = 0
    points: set[tuple[str, str]] = set()
    with events.open("rb") as stream:
        for _number, raw in iter_jsonl(stream):
            event = decoder.decode_line(raw)
            readings += event.type == "reading"
            line = formatter.format(event)
            # the series (up to the first space not escaped) and the time (after the last)
            points.add((_SERIES_END.split(line, maxsplit=1)[0], line.rsplit(" ", 1)[1]))
            batch.append(line)
            if len(batch) == batch_lines:
                bodies.append("\n".join(batch).encode())
                batch = []
    if batch:
        bodies.append("\n".join(batch).encode())
    if compress:
        bodies = [gzip.compress(body, compresslevel=1) for body in bodies]
    return bodies, readings, len(points)


def run_floor(url: str, database: str, bodies: list[bytes], compress: bool) -> float:
    headers = {"Content-Encoding": "gzip"} if compress else {}
    with httpx.Client(base_url=url, timeout=120) as http:
        http.post("/query", data={"q": f'CREATE DATABASE "{database}"'}).raise_for_status()
        began = time.perf_counter()
        for body in bodies:
            response = http.post(
                "/write", params={"db": database, "precision": "ns"}, content=body, headers=headers
            )
            response.raise_for_status()
        return time.perf_counter() - began


def run_chargewatch(
    url: str, database: str, events: Path, data_dir: Path, batch_lines: int, compress: bool
) -> tuple[float, float]:
    """Seconds taken and peak resident memory (MB) of one `chargewatch ingest`."""
    env = {
        # the command as installed: its bytecode cached (PYTHONDONTWRITEBYTECODE, which some
        # machines set, would have every start compile the project's modules again), in a
        # folder of its own, not in the checkout
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        "PYTHONPYCACHEPREFIX": str(data_dir.parent / "pycache"),
        "CHARGEWATCH_INFLUX_URL": url,
        "CHARGEWATCH_INFLUX_DATABASE": database,
        "CHARGEWATCH_DATA_DIR": str(data_dir),
        "CHARGEWATCH_INFLUX_BATCH_LINES": str(batch_lines),
        "CHARGEWATCH_INFLUX_GZIP": "true" if compress else "false",
    }
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _REPORT_PEAK, "ingest", str(events)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    elapsed_s = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"chargewatch ingest failed ({done.returncode}): {done.stderr}")
    peak_kb = int(done.stderr.split("peak_kb ")[1].split()[0])
    return elapsed_s, peak_kb / 1024


def stored_points(url: str, database: str) -> int:
    with InfluxClient(url=url, database=database) as client:
        total = 0
        measurements = ("reading", "session_start", "session_stop", "status", "authorize")
        for measurement in (*measurements, "station"):
            # Every point of these measurements has this always-present field.
            key = {
                "reading": "*",
                "session_start": "session_id",
                "session_stop": "session_id",
                "status": "status",
                "authorize": "result",
                "station": "up",  # boot, heartbeat, disconnect
            }[measurement]
            if key == "*":
                series = client.query(f"SELECT * FROM reading WHERE {WINDOW}")
                total += sum(len(s) for s in series)
            else:
                series = client.query(f'SELECT count("{key}") FROM {measurement} WHERE {WINDOW}')
                total += int(series[0].columns["count"][0]) if series else 0
        return total


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def encode_cpu(events: Path, rounds: int = 3) -> tuple[float, float, int]:
    """CPU seconds (best of ``rounds``) to parse every line with orjson and to encode the file
    as ``chargewatch ingest`` does (no InfluxDB), and the number of events accepted."""
    data = events.read_bytes()
    parse_s = encode_s = float("inf")
    accepted = 0
    for _ in range(rounds):
        began = _cpu_s()
        for line in io.BytesIO(data):
            orjson.loads(line)
        parse_s = min(parse_s, _cpu_s() - began)
        encoder = ChunkEncoder(EventDecoder(Pseudonymizer(b"bench-key-0123456789abcdef")))
        began = _cpu_s()
        accepted = 0
        for numbered in iter_jsonl_chunks(io.BytesIO(data), CHUNK_LINES):
            accepted += sum(encoder.encode_lines(numbered).accepted_by_type.values())
        encode_s = min(encode_s, _cpu_s() - began)
    return parse_s, encode_s, accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=560)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--batch-lines", type=int, default=5000)
    parser.add_argument(
        "--gzip",
        action="store_true",
        help="compress writes (chargewatch's default for a remote InfluxDB; off on loopback)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--events", type=Path, help="an events file instead of a new fleet")
    parser.add_argument("--encode-only", action="store_true", help="no InfluxDB: CPU figures")
    args = parser.parse_args()
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    compress = args.gzip
    if not args.encode_only:
        find_or_install_influxd()
    with tempfile.TemporaryDirectory(prefix="cw-bench-") as tmp:
        folder = Path(tmp)
        events = args.events or simulate_fleet(folder, args.stations, args.hours, seed=11)
        file_mb = events.stat().st_size / 1e6
        parse_s, encode_s, accepted = encode_cpu(events)
        print(
            f"encode without InfluxDB (CPU, best of 3): orjson parse {parse_s:.2f} s,"
            f" chargewatch encode {encode_s:.2f} s = {encode_s / parse_s:.1f}x the parse"
            f" ({accepted} events accepted)"
        )
        if args.encode_only:
            return
        bodies, readings, points = formatted_batches(events, args.batch_lines, compress)
        print(
            f"file: {file_mb:.0f} MB, {readings} readings, {points} points, "
            f"batches of {args.batch_lines}, gzip {'on' if compress else 'off'}"
        )
        server = LocalInfluxd(data_dir=folder / "influxdb", port=free_port())
        server.start()
        try:
            floors: list[float] = []
            ours: list[float] = []
            peak_mb = 0.0
            # a first run (of an empty file) fills the bytecode cache; then again, timed
            empty = folder / "empty.jsonl"
            empty.write_bytes(b"")
            data_dir = folder / "data"
            run_chargewatch(server.url, "warm_up", empty, data_dir, args.batch_lines, compress)
            start_s, _peak = run_chargewatch(
                server.url, "warm_up", empty, data_dir, args.batch_lines, compress
            )
            print(f"start-up (chargewatch ingest of an empty file): {start_s:.2f} s")
            for round_ in range(args.rounds):
                db_floor, db_ours = f"floor_{uuid.uuid4().hex[:8]}", f"cw_{uuid.uuid4().hex[:8]}"
                for turn in (0, 1) if round_ % 2 == 0 else (1, 0):
                    if turn == 0:
                        floors.append(run_floor(server.url, db_floor, bodies, compress))
                        continue
                    seconds, peak = run_chargewatch(
                        server.url, db_ours, events, folder / "data", args.batch_lines, compress
                    )
                    ours.append(seconds)
                    peak_mb = max(peak_mb, peak)
                print(f"round {round_ + 1}: floor {floors[-1]:.2f} s, chargewatch {ours[-1]:.2f} s")
                if round_ == 0:
                    got_floor, got_ours = (
                        stored_points(server.url, db_floor),
                        stored_points(server.url, db_ours),
                    )
                    status = "ok" if got_floor == got_ours == points else "MISMATCH"
                    print(
                        f"stored points: floor {got_floor}, chargewatch {got_ours}, "
                        f"file {points}: {status}"
                    )
        finally:
            server.stop()
    floor_s, ours_s = min(floors), min(ours)
    print(f"floor (line protocol posted): {readings / floor_s:,.0f} readings/s ({floor_s:.2f} s)")
    print(f"chargewatch ingest:           {readings / ours_s:,.0f} readings/s ({ours_s:.2f} s)")
    print(f"ratio chargewatch / floor: {ours_s / floor_s:.2f} (target <= 1.3)")
    print(f"peak memory of chargewatch ingest: {peak_mb:.0f} MB for a {file_mb:.0f} MB file")
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
