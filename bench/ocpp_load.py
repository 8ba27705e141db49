"""Benchmark: how many OCPP 1.6 stations one gateway process serves with p99 under 100 ms.

The gateway (schema validation on, as in production) runs behind ``websockets.serve`` in its own
process, on loopback, with a sink that only counts events: the spool (fsync) and InfluxDB path
is measured separately (bench/ingest.py). This process opens N real WebSocket connections, boots
each station, then every station sends MeterValues with 5 measurands (energy, power, current,
voltage, SoC) every 10 s, staggered evenly over the period. For each N it reports messages/s,
p50/p99 response latency (send to CallResult), and whether every acknowledged reading reached the
sink; N ramps (500, 1000, 2000, ...) until p99 reaches 100 ms, a step fails, or --max-stations.

    .venv/bin/python bench/ocpp_load.py                         # 500 .. 16000 stations
    .venv/bin/python bench/ocpp_load.py --max-stations 1000 --seconds 20   # a quick look
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path and its name would shadow the `ingest` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import gc
import multiprocessing
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing.connection import Connection as Pipe

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from chargewatch.events import Event
from ingest.ocpp import (
    SUBPROTOCOLS,
    AuthMode,
    AuthPolicy,
    InMemoryTransactionIds,
    OcppGateway,
    websockets_connection,
)
from ingest.pseudonym import Pseudonymizer

PERIOD_S = 10.0
DEBUG = "--debug" in sys.argv
STATS_PATH = "/__stats__"


def _serve(pipe: Pipe, freeze: bool) -> None:
    """The gateway process: serve until terminated; ``/__stats__`` answers the sink's counts."""
    counts: Counter[str] = Counter()
    gc_started: list[float] = [0.0]

    def gc_timer(phase: str, info: dict[str, int]) -> None:  # the longest collector pause
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            pause_us = round((time.perf_counter() - gc_started[0]) * 1e6)
            counts["gc_max_us"] = max(counts["gc_max_us"], pause_us)

    gc.callbacks.append(gc_timer)

    async def sink(events: list[Event]) -> None:
        for event in events:
            counts[event.type.value] += 1

    gateway = OcppGateway(
        sink=sink,
        pseudonymize=Pseudonymizer(b"bench-key-0123456789"),
        transactions=InMemoryTransactionIds(),
        auth=AuthPolicy(AuthMode.MONITOR),
    )

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        if path.endswith(STATS_PATH):
            if freeze:  # the live objects (connections) leave the collector's full passes
                gc.collect()
                gc.freeze()
            counts["tracked_objects"] = len(gc.get_objects())
            report = {**counts, "cpu_us": round(time.process_time() * 1e6)}
            counts["gc_max_us"] = 0
            await ws.send(orjson.dumps(report).decode())
            return
        station_id = path.rsplit("/", 1)[-1]
        await gateway.handle(station_id, ws.subprotocol or "", websockets_connection(ws))

    async def main() -> None:
        protocols = [Subprotocol(p) for p in SUBPROTOCOLS]
        async with serve(
            handler, "127.0.0.1", 0, subprotocols=protocols, compression=None, backlog=4096
        ) as server:
            pipe.send(next(iter(server.sockets)).getsockname()[1])
            await asyncio.Future()  # until terminated

    asyncio.run(main())


async def _sink_counts(url: str) -> dict[str, int]:
    async with connect(url + STATS_PATH, subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        return dict(orjson.loads(await ws.recv()))


def _meter_values(n: int, energy_wh: float) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    sampled = [
        {"value": f"{energy_wh:.0f}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
        {"value": "32.1", "measurand": "Current.Import", "unit": "A"},
        {"value": "230.4", "measurand": "Voltage", "unit": "V"},
        {"value": "57", "measurand": "SoC", "unit": "Percent", "location": "EV"},
    ]
    payload = {"connectorId": 1, "meterValue": [{"timestamp": now, "sampledValue": sampled}]}
    return orjson.dumps([2, f"m{n}", "MeterValues", payload]).decode()


_CLIENT_GC = {"start": 0.0, "max_s": 0.0}


def _client_gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _CLIENT_GC["start"] = time.perf_counter()
    else:
        _CLIENT_GC["max_s"] = max(_CLIENT_GC["max_s"], time.perf_counter() - _CLIENT_GC["start"])


class _Step:
    def __init__(self) -> None:
        self.latencies_s: list[float] = []
        self.sent_at: list[float] = []
        self.errors = 0
        self.acknowledged = 0


async def _station(
    ws: ClientConnection, offset_s: float, start: float, end: float, step: _Step
) -> None:
    loop = asyncio.get_running_loop()
    n = 0
    tick = start + offset_s
    while tick < end:
        await asyncio.sleep(max(0.0, tick - loop.time()))
        frame = _meter_values(n, 1_000_000 + n * 20)
        sent = loop.time()
        await ws.send(frame)
        answer = orjson.loads(await ws.recv())
        step.latencies_s.append(loop.time() - sent)
        step.sent_at.append(sent - start)
        if answer[0] == 3:
            step.acknowledged += 1
        else:
            step.errors += 1
        n += 1
        tick += PERIOD_S


async def _open(url: str, stations: int) -> list[ClientConnection]:
    limit = asyncio.Semaphore(100)
    boot = orjson.dumps(
        [2, "b", "BootNotification", {"chargePointModel": "bench", "chargePointVendor": "cw"}]
    ).decode()

    async def one(i: int) -> ClientConnection:
        async with limit:
            ws = await connect(
                f"{url}/BENCH-{i:05d}",
                subprotocols=[Subprotocol("ocpp1.6")],
                compression=None,
                open_timeout=30,
                ping_interval=None,
            )
            await ws.send(boot)
            await ws.recv()
            return ws

    return list(await asyncio.gather(*(one(i) for i in range(stations))))


async def _run_step(url: str, stations: int, seconds: float) -> dict[str, float | int | bool]:
    began = time.perf_counter()
    connections = await _open(url, stations)
    connect_s = time.perf_counter() - began
    # The clients are the measuring apparatus: their own collector must not add pauses.
    gc.collect()
    gc.freeze()
    stats_before = await _sink_counts(url)
    _CLIENT_GC["max_s"] = 0.0
    step = _Step()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5
    end = start + seconds
    try:
        await asyncio.gather(
            *(
                _station(ws, i * PERIOD_S / stations, start, end, step)
                for i, ws in enumerate(connections)
            )
        )
    finally:
        await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
        gc.unfreeze()
    elapsed = loop.time() - start
    stats_after = await _sink_counts(url)
    before, after = stats_before.get("reading", 0), stats_after.get("reading", 0)
    cpu_s = (stats_after["cpu_us"] - stats_before["cpu_us"]) / 1e6
    latencies = sorted(step.latencies_s)
    slowest = sorted(zip(step.latencies_s, step.sent_at, strict=True))[-5:]
    if DEBUG:
        print(
            f"  gateway: {stats_before.get('tracked_objects', 0)} objects tracked by the GC,"
            f" longest GC pause {stats_after.get('gc_max_us', 0) / 1000:.0f} ms;"
            f" client's longest GC pause {_CLIENT_GC['max_s'] * 1000:.0f} ms;"
            " slowest calls (latency ms @ s into the step):",
            ", ".join(f"{lat * 1000:.0f}@{at:.1f}" for lat, at in slowest),
        )
    p = (
        statistics.quantiles(latencies, n=100, method="inclusive")
        if len(latencies) > 1
        else [0.0] * 99
    )
    return {
        "stations": stations,
        "connect_s": connect_s,
        "messages": len(latencies),
        "rate": len(latencies) / elapsed,
        "p50_ms": p[49] * 1000,
        "p99_ms": p[98] * 1000,
        "errors": step.errors,
        "cpu_pct": 100 * cpu_s / elapsed,
        "cpu_us_per_msg": 1e6 * cpu_s / max(1, len(latencies)),
        "gc_max_ms": stats_after.get("gc_max_us", 0) / 1000,
        "all_readings_stored": after - before == step.acknowledged,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--start", type=int, default=500, help="stations in the first step")
    parser.add_argument("--max-stations", type=int, default=16000)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per step")
    parser.add_argument("--debug", action="store_true", help="show the slowest calls")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="the gateway process calls gc.freeze() once the stations are connected",
    )
    parser.add_argument("--p99-ms", type=float, default=100.0, help="latency target")
    args = parser.parse_args()
    if args.seconds + 25 > 60:
        parser.error("each step must stay within 60 s (connecting takes up to ~25 s)")

    gc.callbacks.append(_client_gc_timer)
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_serve, args=(sender, args.gc_freeze), daemon=True)
    server.start()
    try:
        if not receiver.poll(30):
            raise SystemExit("the gateway process did not start")
        url = f"ws://127.0.0.1:{receiver.recv()}/ocpp"
        print("OCPP 1.6 MeterValues (5 measurands) every 10 s per station, gateway in its own")
        print("process behind websockets.serve, schema validation on; sink = in-memory counter")
        print("(the spool/InfluxDB path is measured separately: bench/ingest.py).")
        print(
            f"{'stations':>8} {'connect s':>9} {'msgs':>7} {'msg/s':>7} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'errors':>6} {'cpu %':>6} {'us/msg':>6}  all readings stored"
        )
        best = 0
        stations = args.start
        while stations <= args.max_stations:
            result = asyncio.run(_run_step(url, stations, args.seconds))
            print(
                f"{result['stations']:>8} {result['connect_s']:>9.1f} {result['messages']:>7} "
                f"{result['rate']:>7.0f} {result['p50_ms']:>7.1f} {result['p99_ms']:>7.1f} "
                f"{result['errors']:>6} {result['cpu_pct']:>6.1f} "
                f"{result['cpu_us_per_msg']:>6.0f}  "
                f"{'yes' if result['all_readings_stored'] else 'NO'}",
                flush=True,
            )
            ok = result["p99_ms"] < args.p99_ms and not result["errors"]
            if not ok or not result["all_readings_stored"]:
                break
            best = stations
            stations *= 2
        print(f"largest N with p99 < {args.p99_ms:.0f} ms: {best or 'none'}")
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
