"""Benchmark: how many OCPP 1.6 stations one gateway process serves with p99 under 100 ms.

The gateway (schema validation on, as in production) runs behind ``websockets.serve`` in its own
process, on loopback, with a sink that only counts events: the spool (fsync) and InfluxDB path
is measured separately (bench/ingest.py). This process opens N real WebSocket connections, boots
each station, then every station sends MeterValues with 5 measurands (energy, power, current,
voltage, SoC) every 10 s, staggered evenly over the period. For each N it reports messages/s,
p50/p99 response latency (send to CallResult), and whether every acknowledged reading reached the
sink; N ramps (500, 1000, 2000, ..., then --max-stations itself) until p99 reaches 100 ms or a step
fails.

With ``--serve`` the gateway is the real service instead: a ``chargewatch serve`` subprocess
(spool with fsync, drainer) writing into a private InfluxDB started in a temporary folder, with
scheduled detection off so that only ingest is measured. Every reading carries its own scheduled
timestamp (a point in InfluxDB is station, connector and timestamp: equal ones would overwrite
each other); after each step the spool is waited empty and the step's readings are counted in
InfluxDB against the acknowledged ones.

    .venv/bin/python bench/ocpp_load.py                         # 500 .. 16000 stations
    .venv/bin/python bench/ocpp_load.py --max-stations 1000 --seconds 20   # a quick look
    .venv/bin/python bench/ocpp_load.py --serve --max-stations 4000 --seconds 20
    .venv/bin/python bench/ocpp_load.py --serve --steps 1000,2000,4000,5000 --seconds 30

Columns: cpu % and us/msg are the server's (the gateway process, or serve with all its threads),
client the load client's own CPU per message (it shares the cores), lost the acknowledged
readings not stored, load the 1-minute load average at the end of the step.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path and its name would shadow the `ingest` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection as Pipe
from typing import Protocol

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from chargewatch.errors import InfluxError
from chargewatch.events import Event
from chargewatch.influx.client import InfluxClient
from chargewatch.influx.server import LocalInfluxd, free_port
from ingest.ocppj import (
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
CALL_TIMEOUT_S = 30.0  # a call unanswered this long counts as an error and ends its station
SERVE_START_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 180.0  # the spool must be empty this long after a step
POLL_S = 0.2


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


def _rfc3339_ms(ts_ms: int) -> str:
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def _meter_values(n: int, energy_wh: float, ts_ms: int) -> str:
    now = _rfc3339_ms(ts_ms)
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
    ws: ClientConnection, offset_s: float, start: float, end: float, wall_ms: int, step: _Step
) -> None:
    """Send MeterValues every PERIOD_S from ``start + offset_s`` until ``end`` (loop time).

    Each reading is stamped with its scheduled wall-clock time (``wall_ms`` is ``start``), so
    the readings of one station never share a timestamp and all fall inside the step's window.
    """
    loop = asyncio.get_running_loop()
    n = 0
    tick = start + offset_s
    while tick < end:
        await asyncio.sleep(max(0.0, tick - loop.time()))
        ts_ms = wall_ms + round((tick - start) * 1000)
        frame = _meter_values(n, 1_000_000 + n * 20, ts_ms)
        sent = loop.time()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await ws.send(frame)
                answer = orjson.loads(await ws.recv())
        except TimeoutError:
            step.errors += 1
            return
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
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await ws.send(boot)
                await ws.recv()
            return ws

    return list(await asyncio.gather(*(one(i) for i in range(stations))))


class _Gateway(Protocol):
    """What a step needs of the server under load, whichever it is."""

    @property
    def url(self) -> str:
        """``ws://.../ocpp``; each station appends its id."""
        ...

    async def stats(self) -> dict[str, int]:
        """Counters of the server (``cpu_us`` at least), taken before and after a step."""
        ...

    def stored(
        self, before: dict[str, int], after: dict[str, int], window_ms: tuple[int, int]
    ) -> tuple[int, float]:
        """Readings stored during a step (timestamps within ``window_ms``, both ends included)
        and the seconds spent waiting for them to arrive."""
        ...


@dataclass(frozen=True, slots=True)
class _SinkGateway:
    """The gateway in a process of our own with an in-memory counting sink."""

    url: str

    async def stats(self) -> dict[str, int]:
        return await _sink_counts(self.url)

    def stored(
        self, before: dict[str, int], after: dict[str, int], window_ms: tuple[int, int]
    ) -> tuple[int, float]:
        return after.get("reading", 0) - before.get("reading", 0), 0.0


@dataclass(frozen=True, slots=True)
class _ServeGateway:
    """A ``chargewatch serve`` subprocess writing into a private InfluxDB."""

    url: str
    health_url: str
    pid: int
    influx: InfluxClient

    async def stats(self) -> dict[str, int]:
        return {"cpu_us": _process_cpu_us(self.pid)}

    def stored(
        self, before: dict[str, int], after: dict[str, int], window_ms: tuple[int, int]
    ) -> tuple[int, float]:
        waited_s = _wait_spool_empty(self.health_url)
        lower, upper = (_rfc3339_ms(ms) for ms in window_ms)
        try:
            result = self.influx.query(
                f"SELECT count(power_w) FROM reading WHERE time >= '{lower}' AND time <= '{upper}'"
            )
        except InfluxError as exc:
            raise SystemExit(f"could not count the readings in InfluxDB: {exc}") from exc
        counted = sum(int(series.columns["count"].sum()) for series in result)
        return counted, waited_s


def _process_cpu_us(pid: int) -> int:
    """User plus system CPU time of a process (all its threads), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return 0
    fields = stat.rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return round(ticks * 1e6 / os.sysconf("SC_CLK_TCK"))


def _health(http: httpx.Client, url: str) -> dict[str, object] | None:
    try:
        response = http.get(url)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    answer: dict[str, object] = response.json()
    return answer


def _wait_spool_empty(health_url: str) -> float:
    """Seconds until /healthz reports an empty spool; SystemExit after DRAIN_TIMEOUT_S."""
    began = time.monotonic()
    health: dict[str, object] | None = None
    with httpx.Client(timeout=5.0) as http:
        while time.monotonic() - began < DRAIN_TIMEOUT_S:
            health = _health(http, health_url)
            if health is not None and health.get("spool_lines") == 0:
                return time.monotonic() - began
            time.sleep(POLL_S)
    raise SystemExit(f"the spool was not empty {DRAIN_TIMEOUT_S:.0f} s after the step: {health}")


def _chargewatch_command() -> str:
    beside = Path(sys.executable).parent / "chargewatch"
    found = str(beside) if beside.exists() else shutil.which("chargewatch")
    if found is None:
        raise SystemExit("the chargewatch command is not installed (pip install -e .)")
    return found


@contextlib.contextmanager
def _served(folder: Path) -> Iterator[_ServeGateway]:
    """A private InfluxDB and a ``chargewatch serve`` on free loopback ports, stopped on exit."""
    influxd = LocalInfluxd(data_dir=folder / "influxdb", port=free_port())
    influxd.start()
    try:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEWATCH_")}
        env |= {
            "CHARGEWATCH_INFLUX_URL": influxd.url,
            "CHARGEWATCH_INFLUX_DATABASE": f"bench_ocpp_{os.getpid()}_{time.time_ns()}",
            "CHARGEWATCH_DATA_DIR": str(folder / "data"),
            "CHARGEWATCH_DETECT_INTERVAL_S": "0",
        }
        log_path = folder / "serve.log"
        with log_path.open("wb") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [_chargewatch_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=folder,  # no .env of the working folder is read
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            health_url = f"http://127.0.0.1:{port}/healthz"
            _wait_started(process, health_url, log_path)
            with InfluxClient(
                url=influxd.url, database=env["CHARGEWATCH_INFLUX_DATABASE"]
            ) as influx:
                yield _ServeGateway(
                    url=f"ws://127.0.0.1:{port}/ocpp",
                    health_url=health_url,
                    pid=process.pid,
                    influx=influx,
                )
        finally:
            _stop(process)
    finally:
        influxd.stop()


def _wait_started(process: subprocess.Popen[bytes], health_url: str, log_path: Path) -> None:
    began = time.monotonic()
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() - began < SERVE_START_TIMEOUT_S:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise SystemExit(f"chargewatch serve exited with {process.returncode}:\n{tail}")
            if _health(http, health_url) is not None:
                return
            time.sleep(POLL_S)
    raise SystemExit(f"chargewatch serve did not answer {health_url} in {SERVE_START_TIMEOUT_S} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def _sink_gateway(freeze: bool) -> Iterator[_SinkGateway]:
    """The counting-sink gateway in a spawned process, terminated on exit."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_serve, args=(sender, freeze), daemon=True)
    server.start()
    try:
        if not receiver.poll(30):
            raise SystemExit("the gateway process did not start")
        yield _SinkGateway(f"ws://127.0.0.1:{receiver.recv()}/ocpp")
    finally:
        server.terminate()
        server.join(10)


async def _run_step(
    gateway: _Gateway, stations: int, seconds: float
) -> dict[str, float | int | bool]:
    url = gateway.url
    began = time.perf_counter()
    connections = await _open(url, stations)
    connect_s = time.perf_counter() - began
    # The clients are the measuring apparatus: their own collector must not add pauses (a step
    # leaves a few MB of acyclic garbage, which reference counting frees anyway).
    gc.collect()
    gc.freeze()
    gc.disable()
    stats_before = await gateway.stats()
    client_cpu_before_s = time.process_time()
    _CLIENT_GC["max_s"] = 0.0
    step = _Step()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5
    wall_ms = time.time_ns() // 1_000_000 + 500  # the wall clock at `start`, for the timestamps
    end = start + seconds
    if DEBUG:  # for a profiler to attach at the right moment
        print(f"  step of {stations} stations begins", file=sys.stderr, flush=True)
    try:
        await asyncio.gather(
            *(
                _station(ws, i * PERIOD_S / stations, start, end, wall_ms, step)
                for i, ws in enumerate(connections)
            )
        )
    finally:
        await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
        client_gc_max_s = _CLIENT_GC["max_s"]  # the step's own, not the collection after it
        gc.enable()
        gc.unfreeze()
    elapsed = loop.time() - start
    client_cpu_s = time.process_time() - client_cpu_before_s
    stats_after = await gateway.stats()
    window_ms = (wall_ms, wall_ms + round(seconds * 1000))
    stored, waited_s = await asyncio.to_thread(gateway.stored, stats_before, stats_after, window_ms)
    cpu_s = (stats_after["cpu_us"] - stats_before["cpu_us"]) / 1e6
    latencies = sorted(step.latencies_s)
    slowest = sorted(zip(step.latencies_s, step.sent_at, strict=True))[-5:]
    if DEBUG:
        gateway_gc = (
            f"  gateway: {stats_before['tracked_objects']} objects tracked by the GC,"
            f" longest GC pause {stats_after.get('gc_max_us', 0) / 1000:.0f} ms;"
            if "tracked_objects" in stats_before
            else "  gateway GC: not measured;"
        )
        print(
            gateway_gc,
            f"client's longest GC pause {client_gc_max_s * 1000:.0f} ms;"
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
        "client_us_per_msg": 1e6 * client_cpu_s / max(1, len(latencies)),
        "load_1min": os.getloadavg()[0],
        "gc_max_ms": stats_after.get("gc_max_us", 0) / 1000,
        "acknowledged": step.acknowledged,
        "stored": stored,
        "drain_wait_s": waited_s,
        "lost": step.acknowledged - stored,
        "all_readings_stored": stored == step.acknowledged,
    }


def _ramp(gateway: _Gateway, args: argparse.Namespace) -> None:
    print(
        f"{'stations':>8} {'connect s':>9} {'msgs':>7} {'msg/s':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'cpu %':>6} {'us/msg':>6} {'client':>6} {'lost':>5} "
        f"{'load':>5}"
    )
    best = 0
    listed: list[int] = args.steps or []
    stations = listed[0] if listed else args.start
    while True:
        result = asyncio.run(_run_step(gateway, stations, args.seconds))
        print(
            f"{result['stations']:>8} {result['connect_s']:>9.1f} {result['messages']:>7} "
            f"{result['rate']:>7.0f} {result['p50_ms']:>7.1f} {result['p99_ms']:>7.1f} "
            f"{result['errors']:>6} {result['cpu_pct']:>6.1f} "
            f"{result['cpu_us_per_msg']:>6.0f} {result['client_us_per_msg']:>6.0f} "
            f"{result['lost']:>5} {result['load_1min']:>5.1f}",
            flush=True,
        )
        if args.serve:
            print(
                f"{'':>8} acknowledged {result['acknowledged']}, in InfluxDB {result['stored']},"
                f" all arrived: {'yes' if result['all_readings_stored'] else 'no'}"
                f" (spool empty {result['drain_wait_s']:.1f} s after the step)",
                flush=True,
            )
        ok = result["p99_ms"] < args.p99_ms and not result["errors"]
        if ok and result["all_readings_stored"]:
            best = max(best, stations)
        if listed:  # every listed step runs, whatever the one before gave
            listed = listed[1:]
            if not listed:
                break
            stations = listed[0]
            continue
        if not ok or not result["all_readings_stored"] or stations >= args.max_stations:
            break
        stations = min(stations * 2, args.max_stations)  # the last step is --max-stations
    print(f"largest N with p99 < {args.p99_ms:.0f} ms: {best or 'none'}")


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
    parser.add_argument(
        "--serve",
        action="store_true",
        help="load a real `chargewatch serve` (spool, InfluxDB) instead of the counting sink",
    )
    parser.add_argument("--p99-ms", type=float, default=100.0, help="latency target")
    parser.add_argument(
        "--steps",
        type=lambda text: [int(n) for n in text.split(",")],
        help="stations of each step, e.g. 1000,2000,4000,5000: all run, whatever each gives",
    )
    args = parser.parse_args()
    if args.seconds + 25 > 60:
        parser.error("each step must stay within 60 s (connecting takes up to ~25 s)")
    if args.start < 1 or any(n < 1 for n in args.steps or []):
        parser.error("a step has at least 1 station")

    gc.callbacks.append(_client_gc_timer)
    if not args.serve:
        with _sink_gateway(args.gc_freeze) as gateway:
            print("OCPP 1.6 MeterValues (5 measurands) every 10 s per station, gateway in its own")
            print("process behind websockets.serve, schema validation on; sink = in-memory counter")
            print("(the spool/InfluxDB path is measured separately: bench/ingest.py).")
            _ramp(gateway, args)
        return
    with (
        tempfile.TemporaryDirectory(prefix="chargewatch-ocpp-load-") as folder,
        _served(Path(folder)) as served,
    ):
        print("OCPP 1.6 MeterValues (5 measurands) every 10 s per station against `chargewatch")
        print("serve` (uvicorn, spool with fsync, drainer) and a private InfluxDB; detection off;")
        print("cpu % is the serve process's; stored = readings counted in InfluxDB after the")
        print("spool is empty.")
        _ramp(served, args)


if __name__ == "__main__":
    main()
