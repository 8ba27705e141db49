"""Benchmark: the session read API on about a million stored readings.

Simulates a fleet (560 stations x 24 h: ~1 M readings), ingests it into a private InfluxDB and
judges the day with `chargewatch detect --since --until` (which fills the session catalogue),
all with the real commands; then runs `chargewatch serve` and, from this process, one request
at a time: GET /sessions/{id}, /profile and /profile.png, each for sessions drawn at random
(every PNG a different session: no cache helps), and the session list for a few seconds, by one
client and by four. Prints p50/p99 and requests/s; asserts nothing. Targets: JSON p99 < 20 ms,
PNG p99 < 150 ms.

    .venv/bin/python bench/api.py                          # ~1 M readings: a few minutes
    .venv/bin/python bench/api.py --stations 60 --hours 12 # a quick look
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


def latencies(client: httpx.Client, paths: list[str], expect: str) -> np.ndarray:
    took = []
    for path in paths:
        began = time.perf_counter()
        answer = client.get(path)
        took.append(time.perf_counter() - began)
        if answer.status_code != 200 or expect not in answer.headers["content-type"]:
            raise SystemExit(f"{path}: {answer.status_code} {answer.text[:200]}")
    return np.array(took) * 1000.0


def report(name: str, ms: np.ndarray, target_ms: float) -> None:
    p50, p99 = np.percentile(ms, [50, 99])
    verdict = "ok" if p99 < target_ms else "over"
    print(
        f"  {name:<34} n={ms.size:<5} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
        f"max {ms.max():6.1f} ms  (target p99 < {target_ms:.0f} ms: {verdict})"
    )


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=560)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300, help="per JSON route")
    parser.add_argument("--pngs", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=8.0, help="per list measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="chargewatch-api-bench-") as tmp:
        folder = Path(tmp)
        influxd = LocalInfluxd(data_dir=folder / "influxdb", port=free_port())
        influxd.start()
        server: subprocess.Popen[bytes] | None = None
        try:
            env = {
                **os.environ,
                "CHARGEWATCH_INFLUX_URL": influxd.url,
                "CHARGEWATCH_INFLUX_DATABASE": f"bench_{uuid.uuid4().hex[:8]}",
                "CHARGEWATCH_DATA_DIR": str(folder / "data"),
                "CHARGEWATCH_DETECT_INTERVAL_S": "0",  # judged once, below
                # the API's own cost is measured here, not the per-key rate limit
                "CHARGEWATCH_API_RATE_PER_S": "100000",
                "CHARGEWATCH_API_RATE_BURST": "1000000",
            }
            cli = [sys.executable, "-m", "chargewatch"]
            began = time.perf_counter()
            events = simulate_fleet(folder, args.stations, args.hours, seed=args.seed)
            print(f"simulate: {time.perf_counter() - began:.1f} s")
            run([*cli, "ingest", str(events)], env, "ingest")
            until = START + timedelta(hours=args.hours + 1)
            window = ["--since", START.isoformat(), "--until", until.isoformat()]
            run([*cli, "detect", *window], env, "detect (fills the catalogue)")
            key = run([*cli, "keys", "create", "--role", "viewer"], env, "key").strip()
            key = key.splitlines()[-1].strip()

            state = StateStore(f"sqlite:///{folder / 'data' / 'state.db'}")
            rows: list[SessionRow] = []
            cursor: str | None = None
            while True:
                page, cursor = list_sessions(state, limit=1000, after=cursor)
                rows += page
                if cursor is None:
                    break
            state.close()
            finished = [r for r in rows if r.stop_ns is not None]
            readings = sum(1 for _ in events.open("rb")) if events.exists() else 0
            print(f"stored: {len(rows)} sessions in the catalogue, {readings:,} event lines")

            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = subprocess.Popen(
                [*cli, "serve", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_up(url)
            headers = {"Authorization": f"Bearer {key}"}
            pick = random.Random(args.seed)

            def client() -> httpx.Client:
                return httpx.Client(base_url=url, headers=headers, timeout=30)

            with client() as http:
                sample = [pick.choice(finished).session_id for _ in range(args.requests)]
                latencies(http, [f"/api/v1/sessions/{s}" for s in sample[:20]], "json")  # warm
                print("one client, one request at a time:")
                report(
                    "GET /sessions/{id}",
                    latencies(http, [f"/api/v1/sessions/{s}" for s in sample], "json"),
                    20,
                )
                report(
                    "GET /sessions/{id}/profile",
                    latencies(http, [f"/api/v1/sessions/{s}/profile" for s in sample], "json"),
                    20,
                )
                pngs = pick.sample(finished, min(args.pngs, len(finished)))
                png_paths = [f"/api/v1/sessions/{r.session_id}/profile.png" for r in pngs]
                report("GET /sessions/{id}/profile.png", latencies(http, png_paths, "png"), 150)
                report(
                    "  the same, cached (finished)",
                    latencies(http, png_paths[: min(50, len(png_paths))], "png"),
                    150,
                )
            day = f"since={START.isoformat()}&until={until.isoformat()}".replace("+", "%2B")
            list_path = f"/api/v1/sessions?{day}&limit=100"
            flagged_path = f"/api/v1/sessions?{day}&limit=100&flagged=true"
            for clients in (1, 4):
                rate = throughput(client, list_path, clients, args.seconds)
                print(f"  GET /sessions (100 a page), {clients} client(s): {rate:,.0f} requests/s")
            rate = throughput(client, flagged_path, 1, args.seconds)
            print(f"  GET /sessions?flagged=true, 1 client: {rate:,.0f} requests/s")
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
            influxd.stop()


if __name__ == "__main__":
    main()
