"""Benchmark: usage, stations and KPIs over a week of a large fleet.

Simulates a fleet (500 stations x 7 days by default), loads it with `chargewatch ingest`, judges
it with `chargewatch detect --since --until` (which writes the catalogue and the usage pieces),
runs `chargewatch serve`, and from this process asks, one request at a time for a few seconds
each: GET /usage for the week (the network, one station, in UTC and in Europe/Berlin),
/usage.png, /stations and /kpis. Prints p50/p99 and requests/s; asserts nothing.

    .venv/bin/python bench/usage.py                          # 500 x 168 h: tens of minutes
    .venv/bin/python bench/usage.py --stations 50 --hours 48 # a quick look
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path and its name would shadow the `api` package.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(_BENCH.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _BENCH]

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np

from bench._fleet import simulate_fleet
from chargewatch.influx import LocalInfluxd
from chargewatch.influx.server import free_port

START = datetime(2026, 11, 23, tzinfo=UTC)  # the simulator's default start (a Monday)


def run(command: list[str], env: dict[str, str], what: str) -> None:
    began = time.perf_counter()
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    print(f"{what}: {time.perf_counter() - began:.1f} s ({last[:120]})")


def measure(client: httpx.Client, path: str, params: dict[str, Any], seconds: float) -> str:
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    size = 0
    while time.perf_counter() < deadline or len(times) < 5:
        began = time.perf_counter()
        answer = client.get(path, params=params)
        times.append(time.perf_counter() - began)
        answer.raise_for_status()
        size = len(answer.content)
    ms = np.array(times) * 1000
    return (
        f"{path:<22} {params.get('station', params.get('tz', ''))!s:<14} "
        f"p50 {np.percentile(ms, 50):7.1f} ms  p99 {np.percentile(ms, 99):7.1f} ms  "
        f"{len(times) / ms.sum() * 1000:6.1f} req/s  {size / 1024:7.1f} kB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--hours", type=float, default=168.0)
    parser.add_argument("--seconds", type=float, default=5.0, help="per route")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-usage-") as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        events = simulate_fleet(folder, args.stations, args.hours, seed=7)
        print(
            f"simulate {args.stations} stations x {args.hours:g} h: "
            f"{time.perf_counter() - began:.1f} s, {events.stat().st_size / 1e6:.0f} MB"
        )
        influxd = LocalInfluxd(data_dir=folder / "influxdb", port=free_port())
        influxd.start()
        port = free_port()
        env = {
            **os.environ,
            "CHARGEWATCH_INFLUX_URL": influxd.url,
            "CHARGEWATCH_INFLUX_DATABASE": f"bench_{uuid.uuid4().hex[:8]}",
            "CHARGEWATCH_DATA_DIR": str(folder / "data"),
            "CHARGEWATCH_DETECT_INTERVAL_S": "0",
            "CHARGEWATCH_API_RATE_PER_S": "100000",
            "CHARGEWATCH_API_RATE_BURST": "1000000",
        }
        serve = None
        try:
            cli = [sys.executable, "-m", "chargewatch"]
            run([*cli, "ingest", str(events)], env, "ingest")
            # A day at a time: one window holds all its readings in memory (a week of 500
            # stations, 8 M readings, took more than 20 GB at once).
            until = START + timedelta(hours=args.hours)
            day_start = START
            while day_start < until + timedelta(days=2):
                day_end = day_start + timedelta(days=1)
                window = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (day_start, day_end)]
                run([*cli, "detect", "--since", window[0], "--until", window[1]], env, "detect")
                day_start = day_end
            since_text = START.strftime("%Y-%m-%dT%H:%M:%SZ")
            key = subprocess.run(
                [*cli, "keys", "create", "--role", "viewer"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            serve = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            week = {
                "since": since_text,
                "until": (START + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            day = {
                "since": since_text,
                "until": (START + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
                station = client.get("/api/v1/stations", params=day).json()["stations"][0][
                    "station_id"
                ]
                for path, params in [
                    ("/api/v1/usage", week),
                    ("/api/v1/usage", {**week, "tz": "Europe/Berlin"}),
                    ("/api/v1/usage", {**week, "station": station}),
                    ("/api/v1/usage.png", week),
                    ("/api/v1/stations", day),
                    ("/api/v1/stations", week),
                    (f"/api/v1/stations/{station}", week),
                    ("/api/v1/kpis", week),
                ]:
                    print(measure(client, path, params, args.seconds))
        finally:
            if serve is not None:
                serve.terminate()
                serve.wait(30)
            influxd.stop()


if __name__ == "__main__":
    main()
