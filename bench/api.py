"""Benchmark: the session read API on about a million stored readings.

Simulates a fleet (560 stations x 24 h: ~1 M readings), ingests it into a private InfluxDB and
judges the day with `chargewatch detect --since --until` (which fills the session catalogue),
all with the real commands; then runs `chargewatch serve` and, from this process, one request
at a time: GET /sessions/{id}, /profile and /profile.png, each for sessions drawn at random
(every PNG a different session: no cache helps), and the session list for a few seconds, by one
client and by four. Prints p50/p99, the CPU a request costs the service and InfluxDB, and
requests/s; asserts nothing. Targets: JSON p99 < 20 ms, PNG p99 < 150 ms.

The machine is shared, so a latency alone says little: ``--baseline`` serves another source
tree (an earlier commit) side by side on the same data, and every round measures both with the
same requests and prints the ratio of their p99s. ``--keep`` keeps the prepared fleet, so that
the next run skips the minutes of simulating, ingesting and judging it.

    .venv/bin/python bench/api.py                          # ~1 M readings: a few minutes
    .venv/bin/python bench/api.py --stations 60 --hours 12 # a quick look
    git archive HEAD | tar -x -C /tmp/base                 # a baseline, then:
    .venv/bin/python bench/api.py --keep /tmp/fleet --baseline /tmp/base --rounds 3
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path and its name would shadow the `api` package.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _BENCH]

import argparse
import os
import random
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np

from bench._fleet import simulate_fleet
from chargewatch.catalog import SessionRow, list_sessions
from chargewatch.influx import LocalInfluxd
from chargewatch.influx.server import free_port
from chargewatch.state import StateStore

START = datetime(2026, 11, 23, tzinfo=UTC)  # the simulator's default start


def run(command: list[str], env: dict[str, str], what: str) -> str:
    began = time.perf_counter()
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    print(f"{what}: {time.perf_counter() - began:.1f} s ({last[:120]})")
    return done.stdout


def wait_up(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("chargewatch serve did not come up")


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is not there."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * _TICK_S


class Cpu:
    """CPU per request of the service and of InfluxDB: on a shared machine, wall-clock
    latencies follow the neighbours' load; CPU does much less."""

    def __init__(self, *pids: int | None) -> None:
        self.pids = pids
        self.began = [cpu_s(pid) for pid in pids]

    def per_request_ms(self, requests: int) -> list[float]:
        return [
            (cpu_s(pid) - began) * 1000.0 / max(requests, 1)
            for pid, began in zip(self.pids, self.began, strict=True)
        ]


def latencies(client: httpx.Client, paths: list[str], expect: str) -> np.ndarray:
    took = []
    for path in paths:
        began = time.perf_counter()
        answer = client.get(path)
        took.append(time.perf_counter() - began)
        if answer.status_code != 200 or expect not in answer.headers["content-type"]:
            raise SystemExit(f"{path}: {answer.status_code} {answer.text[:200]}")
    return np.array(took) * 1000.0


def report(name: str, ms: np.ndarray, target_ms: float, cpu: Cpu) -> float:
    """Prints the figures of one measurement; returns its p99."""
    p50, p99 = np.percentile(ms, [50, 99])
    verdict = "ok" if p99 < target_ms else "over"
    serve_ms, influx_ms = cpu.per_request_ms(ms.size)
    print(
        f"  {name:<32} n={ms.size:<4} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
        f"max {ms.max():6.1f} ms  (p99 < {target_ms:.0f} ms: {verdict}); CPU a request: "
        f"serve {serve_ms:5.1f} ms, influxd {influx_ms:4.1f} ms"
    )
    return float(p99)


def throughput(make: Callable[[], httpx.Client], path: str, clients: int, seconds: float) -> float:
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        with make() as client:
            while time.monotonic() < stop:
                answer = client.get(path)
                if answer.status_code != 200:
                    raise SystemExit(f"{path}: {answer.status_code} {answer.text[:200]}")
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - began)


def prepare(folder: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
    """Simulate, ingest and judge the fleet into ``folder`` (skipped when it holds one)."""
    marker = folder / "prepared"
    if marker.exists():
        print(f"reusing the fleet in {folder}: {marker.read_text().strip()}")
        return
    cli = [sys.executable, "-m", "chargewatch"]
    began = time.perf_counter()
    events = simulate_fleet(folder, args.stations, args.hours, seed=args.seed)
    print(f"simulate: {time.perf_counter() - began:.1f} s")
    run([*cli, "ingest", str(events)], env, "ingest")
    until = START + timedelta(hours=args.hours + 1)
    window = ["--since", START.isoformat(), "--until", until.isoformat()]
    run([*cli, "detect", *window], env, "detect (fills the catalogue)")
    key = run([*cli, "keys", "create", "--role", "viewer"], env, "key").strip()
    (folder / "key").write_text(key.splitlines()[-1].strip())
    lines = sum(1 for _ in events.open("rb"))
    events.unlink()  # hundreds of MB, stored in InfluxDB now
    marker.write_text(f"{args.stations} stations x {args.hours} h, {lines:,} event lines\n")


def catalogued(state_url: str) -> list[SessionRow]:
    state = StateStore(state_url)
    rows: list[SessionRow] = []
    cursor: str | None = None
    try:
        while True:
            page, cursor = list_sessions(state, limit=1000, after=cursor)
            rows += page
            if cursor is None:
                return rows
    finally:
        state.close()


class Server:
    """``chargewatch serve`` from a source tree (this one, or a baseline's), on its own port
    and data directory, over the shared InfluxDB database and state database."""

    def __init__(self, name: str, source: Path, env: dict[str, str], data_dir: Path) -> None:
        self.name = name
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {**env, "CHARGEWATCH_DATA_DIR": str(data_dir), "PYTHONPATH": str(source)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chargewatch", "serve", "--port", str(port)],
            env=env,
            cwd=source,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_up(self.url)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def measure(
    servers: list[Server],
    key: str,
    influxd_pid: int | None,
    finished: list[SessionRow],
    args: argparse.Namespace,
    round_no: int,
) -> None:
    """One round: every route on every server, the same requests in the same order."""
    headers = {"Authorization": f"Bearer {key}"}
    pick = random.Random(args.seed + round_no)
    sample = [pick.choice(finished).session_id for _ in range(args.requests)]
    pngs = pick.sample(finished, min(args.pngs, len(finished)))
    routes = (
        ("GET /sessions/{id}", [f"/api/v1/sessions/{s}" for s in sample], "json", 20),
        (
            "GET /sessions/{id}/profile",
            [f"/api/v1/sessions/{s}/profile" for s in sample],
            "json",
            20,
        ),
        (
            "GET /sessions/{id}/profile.png",
            [f"/api/v1/sessions/{r.session_id}/profile.png" for r in pngs],
            "png",
            150,
        ),
    )
    print(f"round {round_no}, load average {os.getloadavg()[0]:.1f} (2 cores):")
    for name, paths, expect, target in routes:
        p99s = []
        for server in servers:
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
                latencies(http, paths[:10], expect)  # warm: connection, first-use imports
                cpu = Cpu(server.process.pid, influxd_pid)
                ms = latencies(http, paths, expect)
                p99s.append(report(f"{server.name:>8} {name}", ms, target, cpu))
                if expect == "png":
                    cpu = Cpu(server.process.pid, influxd_pid)
                    # the last drawn: answers are kept a minute (analytics.read.model)
                    cached = latencies(http, paths[-min(50, len(paths)) :], expect)
                    report(f"{server.name:>8}   the same again", cached, target, cpu)
        if len(p99s) == 2:
            print(f"  {name}: p99 new/baseline = {p99s[0] / p99s[1]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=560)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300, help="per JSON route")
    parser.add_argument("--pngs", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=8.0, help="per list measurement")
    parser.add_argument("--rounds", type=int, default=1, help="of the latency measurements")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the prepared fleet (InfluxDB, state) in this folder, and reuse it next time",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another source tree (e.g. `git archive COMMIT | tar -x -C DIR`) served side by "
        "side on the same data: each round measures both, and prints new/baseline",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="chargewatch-api-bench-") as tmp:
        folder = args.keep.resolve() if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        influxd = LocalInfluxd(data_dir=folder / "influxdb", port=free_port())
        influxd.start()
        servers: list[Server] = []
        try:
            database = folder / "database"
            if not database.exists():
                database.write_text(f"bench_{uuid.uuid4().hex[:8]}")
            state_url = f"sqlite:///{folder / 'state.db'}"
            env = {
                **os.environ,
                "CHARGEWATCH_INFLUX_URL": influxd.url,
                "CHARGEWATCH_INFLUX_DATABASE": database.read_text().strip(),
                "CHARGEWATCH_DATA_DIR": str(folder / "data"),
                "CHARGEWATCH_STATE_URL": state_url,
                "CHARGEWATCH_DETECT_INTERVAL_S": "0",  # judged once, in prepare()
                # the API's own cost is measured here, not the per-key rate limit
                "CHARGEWATCH_API_RATE_PER_S": "100000",
                "CHARGEWATCH_API_RATE_BURST": "1000000",
            }
            prepare(folder, args, env)
            key = (folder / "key").read_text().strip()
            rows = catalogued(state_url)
            finished = [r for r in rows if r.stop_ns is not None]
            print(f"stored: {len(rows)} sessions in the catalogue")

            servers.append(Server("new", _BENCH.parent, env, folder / "serve-new"))
            if args.baseline is not None:
                baseline = args.baseline.resolve()
                servers.append(Server("baseline", baseline, env, folder / "serve-baseline"))
            print("one client, one request at a time; sessions drawn at random, every PNG")
            print("a different session (no cache helps), then the last 50 again:")
            for round_no in range(args.rounds):
                measure(servers, key, influxd.pid, finished, args, round_no)

            server = servers[0]
            headers = {"Authorization": f"Bearer {key}"}

            def client() -> httpx.Client:
                return httpx.Client(base_url=server.url, headers=headers, timeout=30)

            until = START + timedelta(hours=args.hours + 1)
            day = f"since={START.isoformat()}&until={until.isoformat()}".replace("+", "%2B")
            list_path = f"/api/v1/sessions?{day}&limit=100"
            flagged_path = f"/api/v1/sessions?{day}&limit=100&flagged=true"
            for path, name, clients in (
                (list_path, "GET /sessions (a page of 100)", 1),
                (list_path, "GET /sessions (a page of 100)", 4),
                (flagged_path, "GET /sessions?flagged=true", 1),
            ):
                began_cpu = cpu_s(server.process.pid)
                rate = throughput(client, path, clients, args.seconds)
                serve_ms = (cpu_s(server.process.pid) - began_cpu) * 1000.0
                serve_ms /= max(rate * args.seconds, 1)
                print(
                    f"  {name}, {clients} client(s): {rate:,.0f} requests/s "
                    f"(serve CPU {serve_ms:.1f} ms a request)"
                )
        finally:
            for server in servers:
                server.stop()
            influxd.stop()


if __name__ == "__main__":
    main()
