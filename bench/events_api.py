"""Benchmark: `POST /api/v1/events` in batches of 1,000 against what InfluxDB itself costs.

The floor is the same points as ready line protocol posted straight to InfluxDB in the same
batches of 1,000 by one writer. chargewatch is a real `chargewatch serve` process: one client
posts the simulated file as JSON arrays of 1,000 events (with several clients, each posts the
events of its share of the stations: --split); each 200 means the batch is validated,
pseudonymized and fsynced in the spool. Reported: events/s until the last acknowledgement, events/s
until everything is in InfluxDB (spool drained), and the ratio of the latter to the floor, measured
just before and just after it (their mean: a shared machine's load weighs on both alike); the CPU
seconds each part spent meanwhile (serve, its batch workers, influxd) and per 1,000 events (what
the ratio comes to when the cores are busy with other work); and the load average. The two cores
are shared by all of them and by this client. Each floor and each chargewatch run gets an InfluxDB
of its own, started empty: one that has just taken the last run's 370 k points compacts them
meanwhile, and a floor measured there came out 30-50 % slower than on a fresh one.

    .venv/bin/python bench/events_api.py --stations 200 --hours 24

With --encode-only, no server and no InfluxDB: the batch worker's own encode of each body of the
simulated file (split, checks, line protocol), in this process, alone and in groups of four,
and its CPU per body of 1,000 events (what the columnar path's fixed cost per call comes to).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path; keep it from shadowing the packages.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _BENCH]

import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson

from bench._fleet import simulate_fleet
from chargewatch.events import EventDecoder, iter_jsonl
from chargewatch.influx import LocalInfluxd, find_or_install_influxd
from chargewatch.influx.server import free_port
from chargewatch.schema import LineFormatter
from ingest.pseudonym import Pseudonymizer

BATCH = 1000


def floor_seconds(url: str, events: Path) -> float:
    decoder = EventDecoder(Pseudonymizer(b"bench-key-0123456789abcdef"))
    formatter = LineFormatter()
    lines = [formatter.format(decoder.decode_line(raw)) for _, raw in iter_jsonl(events.open("rb"))]
    bodies = ["\n".join(lines[i : i + BATCH]).encode() for i in range(0, len(lines), BATCH)]
    database = f"floor_{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=url, timeout=60) as http:
        http.post("/query", data={"q": f'CREATE DATABASE "{database}"'}).raise_for_status()
        began = time.perf_counter()
        for body in bodies:
            http.post("/write", params={"db": database}, content=body).raise_for_status()
        return time.perf_counter() - began


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time of a live process (all its threads), from /proc."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (serve's batch workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _shares(objects: list[Any], clients: int, split: str) -> list[list[Any]]:
    """What each client posts, in the file's order: by station ("stations", as back offices
    of their own stations would), or batches of the file in turns ("turns": the clients post
    neighbouring slices of time at once, so InfluxDB gets each station's readings out of
    order)."""
    if split == "stations":
        return [
            [o for o in objects if zlib.crc32(str(o.get("station_id")).encode()) % clients == i]
            for i in range(clients)
        ]
    batches = [objects[i : i + BATCH] for i in range(0, len(objects), BATCH)]
    return [[o for batch in batches[i::clients] for o in batch] for i in range(clients)]


def _bodies(objects: list[Any]) -> list[bytes]:
    return [orjson.dumps(objects[i : i + BATCH]) for i in range(0, len(objects), BATCH)]


def chargewatch_seconds(
    influx_url: str,
    influx_pid: int | None,
    events: Path,
    folder: Path,
    clients: int,
    split: str,
) -> tuple[float, float, int, dict[str, float]]:
    port = free_port()
    env = {
        **os.environ,
        "CHARGEWATCH_INFLUX_URL": influx_url,
        "CHARGEWATCH_INFLUX_DATABASE": f"cw_{uuid.uuid4().hex[:8]}",
        "CHARGEWATCH_DATA_DIR": str(folder / "cw"),
        "CHARGEWATCH_DETECT_INTERVAL_S": "0",  # measure ingest alone
        # one key posts everything: its rate limit (20 requests/s by default) is not measured
        "CHARGEWATCH_API_RATE_PER_S": "100000",
    }
    key = subprocess.run(
        [sys.executable, "-m", "chargewatch", "keys", "create", "--role", "operator"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=_BENCH.parent,
    ).stdout.strip()
    server = subprocess.Popen(
        [sys.executable, "-m", "chargewatch", "serve", "--port", str(port)],
        env=env,
        cwd=_BENCH.parent,  # `-m` puts the working folder first: serve this tree's code
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(server, base)
        objects = [orjson.loads(raw) for _, raw in iter_jsonl(events.open("rb"))]
        shares = [_bodies(objects) for objects in _shares(objects, clients, split)]
        headers = {"Authorization": f"Bearer {key}"}

        def post_share(share: list[bytes]) -> int:
            done = 0
            with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                for body in share:
                    answer = client.post("/api/v1/events", content=body)
                    answer.raise_for_status()
                    done += int(answer.json()["accepted"])
            return done

        # Start the batch workers before measuring: their start-up (imports) is not ingest.
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post_share, [[b"[]"] * 4] * 4))
        workers = {pid: cpu_seconds(pid) for pid in children(server.pid)}
        cpu_before = {"serve": cpu_seconds(server.pid), "influxd": cpu_seconds(influx_pid)}
        began = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            accepted = sum(pool.map(post_share, shares))
        acked = time.perf_counter() - began
        with httpx.Client(base_url=base) as health:  # one client: a new one costs ~20 ms CPU
            while health.get("/healthz").json()["spool_lines"]:
                time.sleep(0.02)
            drained = time.perf_counter() - began
            metrics = health.get("/metrics", headers=headers).text
        cpu = {
            "serve": cpu_seconds(server.pid) - cpu_before["serve"],
            # a worker started meanwhile counts whole, its start-up (imports) too
            "workers": sum(
                cpu_seconds(pid) - workers.get(pid, 0.0) for pid in children(server.pid)
            ),
            "influxd": cpu_seconds(influx_pid) - cpu_before["influxd"],
        }
        now = [pid for pid in children(server.pid) if b"resource_tracker" not in _cmdline(pid)]
        cpu["worker_processes"] = len(now)
        cpu["workers_started"] = len([pid for pid in now if pid not in workers])
        cpu["writes"] = _metric(metrics, "chargewatch_influx_write_seconds_count")
        cpu["write_s"] = _metric(metrics, "chargewatch_influx_write_seconds_sum")
        return acked, drained, accepted, cpu
    finally:
        server.terminate()
        server.wait(30)


# serve's start-up (imports, the state database, its first worker later) took 8-15 s when the
# two cores were busy with other work: ten seconds of waiting ended a run with "connection
# refused" before it measured anything
SERVE_START_S = 60.0


def _wait_until_serving(server: subprocess.Popen[bytes], base: str) -> None:
    """Until ``/healthz`` answers; raises when serve exits or does not answer in time."""
    deadline = time.monotonic() + SERVE_START_S
    while True:
        try:
            httpx.get(f"{base}/healthz").raise_for_status()
            return
        except httpx.HTTPError:
            if server.poll() is not None:
                raise RuntimeError(f"serve exited with {server.returncode} at start") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve did not answer within {SERVE_START_S:.0f} s") from None
            time.sleep(0.1)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _metric(text: str, name: str) -> float:
    """A sample of serve's /metrics (Prometheus text), 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def encode_cpu(events: Path) -> None:
    """CPU per body as the batch worker encodes it (``service.batches``), one body at a time and
    four at a time, each body once (one sender's clock, going forward)."""
    from service import batches

    objects = [orjson.loads(raw) for _, raw in iter_jsonl(events.open("rb"))]
    bodies = _bodies(objects)
    key = Pseudonymizer(b"bench-key-0123456789abcdef")
    for size in (1, 4):
        batches._start_worker(key)  # a fresh encoder (and receive clock) for each pass
        began = time.process_time()
        for first in range(0, len(bodies), size):
            group = [([body], False) for body in bodies[first : first + size]]
            if size == 1:
                batches._encode(group[0][0], False, 1 << 26, 100_000, 100)
            else:
                batches._encode_group(group, 1 << 26, 100_000, 100)
        cpu = time.process_time() - began
        print(
            f"encode, {size} bod{'y' if size == 1 else 'ies'} per call: {len(bodies)} bodies "
            f"of {BATCH} events, {cpu * 1000 / len(bodies):.2f} ms CPU per body"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--split",
        choices=["stations", "turns"],
        default="stations",
        help="how the clients share the events: by station, or batches in turns",
    )
    parser.add_argument(
        "--encode-only", action="store_true", help="only the batch worker's encode, in process"
    )
    args = parser.parse_args()
    if args.encode_only:
        with tempfile.TemporaryDirectory(prefix="cw-bench-encode-") as tmp:
            encode_cpu(simulate_fleet(Path(tmp), args.stations, args.hours, seed=13))
        return
    find_or_install_influxd()
    with tempfile.TemporaryDirectory(prefix="cw-bench-api-") as tmp:
        folder = Path(tmp)
        events = simulate_fleet(folder, args.stations, args.hours, seed=13)
        for clients in args.clients:
            floors = [_floor(folder / f"floor-{clients}-before", events)]
            with _fresh_influxd(folder / f"influx-{clients}") as server:
                acked_s, drained_s, accepted, cpu = chargewatch_seconds(
                    server.url, server.pid, events, folder / f"c{clients}", clients, args.split
                )
            floors.append(_floor(folder / f"floor-{clients}-after", events))
            floor_s = sum(s for s, _ in floors) / len(floors)
            influx_cpu = sum(c for _, c in floors) / len(floors)
            print(
                f"floor (line protocol posted, 1 writer, batches of {BATCH}): "
                f"{floors[0][0]:.2f} s before, {floors[1][0]:.2f} s after, "
                f"influxd {influx_cpu:.1f} s CPU"
            )
            print(
                f"{clients} client(s): {accepted} events acknowledged at "
                f"{accepted / acked_s:,.0f}/s ({acked_s:.2f} s), all in InfluxDB at "
                f"{accepted / drained_s:,.0f}/s ({drained_s:.2f} s); "
                f"floor {accepted / floor_s:,.0f}/s; ratio {drained_s / floor_s:.2f}; CPU s: "
                + ", ".join(f"{name} {cpu[name]:.1f}" for name in ("serve", "workers", "influxd"))
                + f" ({cpu['worker_processes']:.0f} worker processes, "
                + f"{cpu['workers_started']:.0f} started meanwhile)"
                + f"; {cpu['writes']:.0f} InfluxDB writes taking {cpu['write_s']:.1f} s"
            )
            per_k = 1000 / accepted if accepted else 0.0
            print(
                "  CPU ms per 1,000 events: "
                + ", ".join(
                    f"{name} {cpu[name] * 1000 * per_k:.1f}"
                    for name in ("serve", "workers", "influxd")
                )
                + f" (floor's influxd {influx_cpu * 1000 * per_k:.1f}); load average "
                + " ".join(f"{load:.2f}" for load in os.getloadavg())
            )


@contextlib.contextmanager
def _fresh_influxd(data_dir: Path) -> Iterator[LocalInfluxd]:
    """An InfluxDB of its own, started empty, stopped and its data removed afterwards."""
    server = LocalInfluxd(data_dir=data_dir, port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _floor(data_dir: Path, events: Path) -> tuple[float, float]:
    """The floor's seconds and influxd's CPU seconds, on an InfluxDB of its own."""
    with _fresh_influxd(data_dir) as server:
        influx_cpu = cpu_seconds(server.pid)
        seconds = floor_seconds(server.url, events)
        return seconds, cpu_seconds(server.pid) - influx_cpu


if __name__ == "__main__":
    main()
