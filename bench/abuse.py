"""Benchmark: issue 9's attack mix against a real ``chargewatch serve``, while honest stations
measure their round trips.

A private InfluxDB and ``chargewatch serve`` (its default limits, station authentication on,
scheduled detection off) run on loopback ports. Honest OCPP 1.6 stations (Basic auth, right
passwords) send a Heartbeat or a MeterValues each every ``--period`` seconds, staggered, first
alone (the baseline) and then while a separate process attacks:

- ``bodies``: ``POST /api/v1/events`` with an operator key, one after the other: 16 MiB of
  ``[0,0,...]``, 16 MiB of ``[[],[],...]``, one 16 MiB string of escaped quotes, 8 M lines of
  ``0``, 100,000 events that are all invalid (each one a rejection);
- ``gzip``: gzip bombs (300 kB that inflate to 256 MiB);
- ``slow``: many HTTP clients that send their headers a line every few seconds, never finishing;
- ``passwords``: OCPP upgrades with wrong passwords, ten at a time;
- ``frames``: an authenticated station sending MeterValues of 150,000 sampled values (10 MB);
- ``transactions``: an authenticated OCPP 2.0.1 station opening transactions as fast as it is
  answered, never closing one.

It prints the honest stations' p50/p99/max round trip (and the p99 of the Heartbeats alone,
which store nothing: no fsync in them) and errors for each phase, the serve process's CPU and
the peak resident memory of serve and its batch workers (summed, sampled every 50 ms), and what
each attack got. The attacking process runs at the lowest priority: it stands for another
machine, whose CPU would not be this one's. Targets (issue 9): p99 under 100 ms, memory under
1 GB. It prints figures and asserts nothing.

    .venv/bin/python bench/abuse.py                        # 100 stations, 10 s alone, 30 s attacked
    .venv/bin/python bench/abuse.py --stations 200 --seconds 60 --attacks bodies,gzip
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path and bench/ingest.py would shadow `ingest`.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import asyncio
import base64
import contextlib
import gc
import multiprocessing
import os
import resource
import statistics
import subprocess
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from bench.ocpp_load import (
    _chargewatch_command,
    _meter_values,
    _process_cpu_us,
    _stop,
    _wait_started,
)
from chargewatch.influx.server import LocalInfluxd, free_port
from chargewatch.roles import Role
from chargewatch.settings import Settings
from chargewatch.state import StateStore

ATTACKS = ("bodies", "gzip", "slow", "passwords", "frames", "transactions")
CALL_TIMEOUT_S = 30.0
PASSWORD = "honest-station-password-0123"
ATTACKER_16, ATTACKER_201 = "ATTACK-16", "ATTACK-201"
# Each attack comes from an address of its own (loopback has 127/8), as from another client:
# one attack's per-address throttling must not hide another's effect. Honest: 127.0.0.1.
SOURCES = {name: f"127.0.0.{i}" for i, name in enumerate(ATTACKS, start=2)}


@dataclass(frozen=True, slots=True)
class Target:
    http: str  # http://127.0.0.1:port
    ws: str  # ws://127.0.0.1:port/ocpp
    pid: int
    operator_key: str


# -- the service ---------------------------------------------------------------------------------


@contextlib.contextmanager
def served(folder: Path, stations: int) -> Iterator[Target]:
    """InfluxDB and ``chargewatch serve`` (station auth on, detection off) on loopback, with
    passwords for the honest and attacking stations and an operator key."""
    influxd = LocalInfluxd(data_dir=folder / "influxdb", port=free_port())
    influxd.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEWATCH_")}
        env |= {
            "CHARGEWATCH_INFLUX_URL": influxd.url,
            "CHARGEWATCH_INFLUX_DATABASE": f"bench_abuse_{os.getpid()}",
            "CHARGEWATCH_DATA_DIR": str(folder / "data"),
            "CHARGEWATCH_DETECT_INTERVAL_S": "0",
            "CHARGEWATCH_OCPP_STATION_AUTH": "true",
        }
        key = _provision(Settings(_env_file=None, data_dir=folder / "data"), stations)  # type: ignore[call-arg]
        port = free_port()
        log_path = folder / "serve.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [_chargewatch_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            http = f"http://127.0.0.1:{port}"
            _wait_started(process, f"{http}/healthz", log_path)
            yield Target(http, f"ws://127.0.0.1:{port}/ocpp", process.pid, key)
        finally:
            _stop(process)
    finally:
        influxd.stop()


def _provision(settings: Settings, stations: int) -> str:
    store = StateStore(settings.state_db_url)
    try:
        names = [*(_honest(i) for i in range(stations)), ATTACKER_16, ATTACKER_201]
        with ThreadPoolExecutor(2) as pool:  # PBKDF2 releases the interpreter
            list(pool.map(lambda name: store.set_station_password(name, PASSWORD), names))
        return store.create_api_key(Role.OPERATOR)
    finally:
        store.close()


def _honest(i: int) -> str:
    return f"HONEST-{i:04d}"


def _basic(station: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{station}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class MemoryWatch:
    """The resident memory of the serve process and its children (the batch workers), summed,
    sampled every 50 ms; and the sum of their kernel high-water marks (an upper bound)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[int]:
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
        return found

    def _sum(self, key: str) -> int:
        total = 0
        for pid in self._tree():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(key):
                        total += int(line.split()[1])
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_kb = max(self.peak_kb, self._sum("VmRSS:"))

    def reset(self) -> None:
        self.peak_kb = self._sum("VmRSS:")

    def high_water_kb(self) -> int:
        return self._sum("VmHWM:")

    def processes(self) -> int:
        return len(self._tree())

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# -- honest stations -----------------------------------------------------------------------------


@dataclass(slots=True)
class Phase:
    latencies_s: list[float] = field(default_factory=list)
    heartbeat_s: list[float] = field(default_factory=list)  # answered without storing
    errors: Counter[str] = field(default_factory=Counter)


async def honest_connect(target: Target, i: int, connecting: asyncio.Semaphore) -> ClientConnection:
    name = _honest(i)
    boot = [2, "b", "BootNotification", {"chargePointModel": "b", "chargePointVendor": "cw"}]
    async with connecting:
        ws = await connect(
            f"{target.ws}/{name}",
            subprotocols=[Subprotocol("ocpp1.6")],
            additional_headers=_basic(name, PASSWORD),
            compression=None,
            open_timeout=120,
            ping_interval=None,
        )
        await _call(ws, orjson.dumps(boot).decode())
    return ws


async def honest_station(
    ws: ClientConnection, i: int, stations: int, period_s: float, phases: list[tuple[float, Phase]]
) -> None:
    """Heartbeat and MeterValues in turn, every ``period_s``, staggered; each round trip goes to
    the phase whose (start, Phase) it began in."""
    async with ws:
        loop = asyncio.get_running_loop()
        end = phases[-1][0]
        tick = phases[0][0] + i * period_s / stations
        n = 0
        while tick < end:
            await asyncio.sleep(max(0.0, tick - loop.time()))
            phase = next(p for start, p in reversed(phases[:-1]) if tick >= start)
            ts_ms = time.time_ns() // 1_000_000
            frame = (
                _meter_values(n, 1_000_000 + n * 20, ts_ms)
                if n % 2
                else orjson.dumps([2, f"h{n}", "Heartbeat", {}]).decode()
            )
            sent = loop.time()
            try:
                answer = await _call(ws, frame)
            except TimeoutError:
                phase.errors["timeout"] += 1
                return
            except Exception as exc:  # the connection went away: counted, the station stops
                phase.errors[type(exc).__name__] += 1
                return
            phase.latencies_s.append(loop.time() - sent)
            if not n % 2:
                phase.heartbeat_s.append(loop.time() - sent)
            if answer[0] != 3:
                phase.errors[f"CallError {answer[2]}"] += 1
            n += 1
            tick += period_s


async def _call(ws: ClientConnection, frame: str) -> list[object]:
    async with asyncio.timeout(CALL_TIMEOUT_S):
        await ws.send(frame)
        return list(orjson.loads(await ws.recv()))


# -- the attacks (in a process of their own) -----------------------------------------------------


def attack_process(target: Target, attacks: list[str], seconds: float, pipe: Pipe) -> None:
    """Prepares the attacks, says "ready", waits for "go", attacks for ``seconds``, and sends
    back what each attack got."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # The attacker would be another machine: its own CPU must not be what slows the service
    # or the measuring stations down on this one.
    os.nice(19)
    bodies = _hostile_bodies() if "bodies" in attacks else {}
    pipe.send("ready")
    pipe.recv()
    pipe.send(asyncio.run(_attack(target, attacks, seconds, bodies)))


async def _attack(
    target: Target, attacks: list[str], seconds: float, bodies: dict[str, bytes]
) -> dict[str, Counter[str]]:
    results: dict[str, Counter[str]] = {name: Counter() for name in attacks}
    deadline = asyncio.get_running_loop().time() + seconds
    runners: dict[str, Callable[[Target, float, Counter[str], dict[str, bytes]], Awaitable[None]]]
    runners = {
        "bodies": _bodies,
        "gzip": _gzip_bombs,
        "slow": _slow_clients,
        "passwords": _wrong_passwords,
        "frames": _huge_frames,
        "transactions": _transaction_flood,
    }
    await asyncio.gather(
        *(runners[name](target, deadline, results[name], bodies) for name in attacks)
    )
    return results


def _hostile_bodies() -> dict[str, bytes]:
    bad = orjson.dumps({"type": "reading", "ts": "2026-11-24T08:00:00Z", "station_id": "S"})
    size = 16 << 20
    return {
        "16MiB [0,0,...]": b"[" + b"0," * (size // 2 - 1) + b"]",
        "16MiB [[],[],...]": b"[" + b"[]," * (size // 3 - 1) + b"[]]",
        "16MiB one escaped string": b'["' + b'\\"' * (size // 2 - 3) + b'"]',
        "8M lines of 0": b"0\n" * (size // 2),
        "100k invalid events": b"[" + b",".join([bad] * 100_000) + b"]",
    }


async def _bodies(
    target: Target, deadline: float, counts: Counter[str], bodies: dict[str, bytes]
) -> None:
    headers = {"Authorization": f"Bearer {target.operator_key}"}
    loop = asyncio.get_running_loop()
    transport = httpx.AsyncHTTPTransport(local_address=SOURCES["bodies"])
    async with httpx.AsyncClient(base_url=target.http, timeout=120, transport=transport) as client:
        while loop.time() < deadline:
            for name, body in bodies.items():
                began = loop.time()
                try:
                    answer = await client.post("/api/v1/events", content=body, headers=headers)
                    outcome = f"HTTP {answer.status_code} ({len(answer.content)} B)"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                took_s = loop.time() - began
                counts[f"{name}: {outcome} in {took_s:.1f} s"] += 1
                if loop.time() >= deadline:
                    return


async def _gzip_bombs(target: Target, deadline: float, counts: Counter[str], *_: object) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    spaces = b" " * (1 << 20)
    bomb = b"".join([packer.compress(b"["), *(packer.compress(spaces) for _ in range(256))])
    bomb += packer.compress(b"]") + packer.flush()
    counts[f"bomb of {len(bomb) // 1000} kB"] += 0
    headers = {"Authorization": f"Bearer {target.operator_key}", "Content-Encoding": "gzip"}
    loop = asyncio.get_running_loop()
    transport = httpx.AsyncHTTPTransport(local_address=SOURCES["gzip"])
    async with httpx.AsyncClient(base_url=target.http, timeout=60, transport=transport) as client:
        while loop.time() < deadline:
            try:
                answer = await client.post("/api/v1/events", content=bomb, headers=headers)
                counts[f"HTTP {answer.status_code}"] += 1
            except httpx.HTTPError as exc:
                counts[type(exc).__name__] += 1


async def _slow_clients(target: Target, deadline: float, counts: Counter[str], *_: object) -> None:
    host, port = target.http.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(
                host, int(port), local_addr=(SOURCES["slow"], 0)
            )
        except OSError:
            counts["could not connect"] += 1
            return
        counts["connected"] += 1
        try:
            writer.write(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\n")
            while loop.time() < deadline:
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(3):
                        answer = await reader.read(1024)
                        status = answer.split(b" ", 2)[1].decode() if answer else ""
                        counts[f"answered {status}" if answer else "closed by the server"] += 1
                        return
                writer.write(f"X-Slow-{i}: 1\r\n".encode())
            counts["still open at the end"] += 1
        except OSError:
            counts["closed by the server"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(one(i) for i in range(2000)))


async def _wrong_passwords(
    target: Target, deadline: float, counts: Counter[str], *_: object
) -> None:
    loop = asyncio.get_running_loop()

    async def worker(w: int) -> None:
        n = 0
        while loop.time() < deadline:
            station = _honest(n % 50) if w % 2 else f"NOBODY-{w}-{n}"
            n += 1
            try:
                ws = await connect(
                    f"{target.ws}/{station}",
                    subprotocols=[Subprotocol("ocpp1.6")],
                    additional_headers=_basic(station, "wrong-password-0123456789"),
                    open_timeout=30,
                    local_addr=(SOURCES["passwords"], 0),
                )
                counts["accepted (!)"] += 1
                await ws.close()
            except InvalidStatus as exc:
                counts[f"HTTP {exc.response.status_code}"] += 1
            except (OSError, TimeoutError) as exc:
                counts[type(exc).__name__] += 1

    await asyncio.gather(*(worker(w) for w in range(10)))


async def _huge_frames(target: Target, deadline: float, counts: Counter[str], *_: object) -> None:
    sampled = [{"value": "1.0", "measurand": "Voltage", "unit": "V"}] * 150_000
    payload = {
        "connectorId": 1,
        "meterValue": [{"timestamp": "2026-11-24T08:00:00Z", "sampledValue": sampled}],
    }
    frame = orjson.dumps([2, "big", "MeterValues", payload]).decode()
    counts[f"frame of {len(frame) // 1_000_000} MB"] += 0
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        try:
            async with connect(
                f"{target.ws}/{ATTACKER_16}",
                subprotocols=[Subprotocol("ocpp1.6")],
                additional_headers=_basic(ATTACKER_16, PASSWORD),
                max_size=None,
                open_timeout=30,
                local_addr=(SOURCES["frames"], 0),
            ) as ws:
                while loop.time() < deadline:
                    answer = await _call(ws, frame)
                    counts[f"answer {answer[2] if answer[0] == 4 else 'CallResult'}"] += 1
        except InvalidStatus as exc:
            counts[f"upgrade HTTP {exc.response.status_code}"] += 1
            await asyncio.sleep(1)
        except Exception as exc:  # closed (1009 message too big) and the like: reconnect
            counts[f"connection ended: {type(exc).__name__}"] += 1
            await asyncio.sleep(0.2)


async def _transaction_flood(
    target: Target, deadline: float, counts: Counter[str], *_: object
) -> None:
    loop = asyncio.get_running_loop()
    n = 0
    while loop.time() < deadline:
        try:
            async with connect(
                f"{target.ws}/{ATTACKER_201}",
                subprotocols=[Subprotocol("ocpp2.0.1")],
                additional_headers=_basic(ATTACKER_201, PASSWORD),
                open_timeout=30,
                local_addr=(SOURCES["transactions"], 0),
            ) as ws:
                while loop.time() < deadline:
                    n += 1
                    event = {
                        "eventType": "Started",
                        "timestamp": "2026-11-24T08:00:00Z",
                        "triggerReason": "CablePluggedIn",
                        "seqNo": 0,
                        "transactionInfo": {"transactionId": f"flood-{n}"},
                        "evse": {"id": 1, "connectorId": 1},
                    }
                    answer = await _call(
                        ws, orjson.dumps([2, f"t{n}", "TransactionEvent", event]).decode()
                    )
                    counts["answered" if answer[0] == 3 else f"CallError {answer[2]}"] += 1
        except Exception as exc:
            counts[f"connection ended: {type(exc).__name__}"] += 1
            await asyncio.sleep(0.2)


# -- the run -------------------------------------------------------------------------------------


async def measure(
    target: Target, args: argparse.Namespace, memory: MemoryWatch
) -> tuple[Phase, Phase, dict[str, Counter[str]], dict[str, float]]:
    loop = asyncio.get_running_loop()
    began = time.perf_counter()
    connecting = asyncio.Semaphore(20)
    baseline, attacked = Phase(), Phase()
    control, remote = multiprocessing.get_context("spawn").Pipe()
    attacker = multiprocessing.get_context("spawn").Process(
        target=attack_process, args=(target, args.attacks, args.seconds, remote), daemon=True
    )
    attacker.start()
    if not await asyncio.to_thread(control.poll, 120):
        raise SystemExit("the attack process did not get ready")
    control.recv()
    # Connecting first (each upgrade a PBKDF2 check on serve's side), then the baseline.
    stations = await asyncio.gather(
        *(honest_connect(target, i, connecting) for i in range(args.stations))
    )
    start = loop.time() + 1.0
    attack_at = start + args.baseline_seconds
    end = attack_at + args.seconds
    phases = [(start, baseline), (attack_at, attacked), (end, Phase())]
    gc.collect()
    gc.freeze()  # the measuring clients must not pause for their own collector
    honest = asyncio.gather(
        *(
            honest_station(ws, i, args.stations, args.period, phases)
            for i, ws in enumerate(stations)
        )
    )
    await asyncio.sleep(max(0.0, start - loop.time()))
    memory.reset()
    cpu0 = _process_cpu_us(target.pid)
    await asyncio.sleep(max(0.0, attack_at - loop.time()))
    cpu1 = _process_cpu_us(target.pid)
    baseline_peak = memory.peak_kb
    memory.reset()
    control.send("go")
    await honest
    cpu2 = _process_cpu_us(target.pid)
    results: dict[str, Counter[str]] = {}
    if await asyncio.to_thread(control.poll, 120):
        results = control.recv()
    attacker.join(30)
    figures = {
        "baseline_cpu_pct": 100 * (cpu1 - cpu0) / 1e6 / args.baseline_seconds,
        "attack_cpu_pct": 100 * (cpu2 - cpu1) / 1e6 / args.seconds,
        "baseline_peak_mb": baseline_peak / 1024,
        "attack_peak_mb": memory.peak_kb / 1024,
        "high_water_mb": memory.high_water_kb() / 1024,
        "processes": memory.processes(),
        "wall_s": time.perf_counter() - began,
    }
    return baseline, attacked, results, figures


def _p99_ms(latencies_s: list[float]) -> float:
    lat = sorted(latencies_s)
    return statistics.quantiles(lat, n=100, method="inclusive")[98] * 1000 if len(lat) > 1 else 0.0


def _row(name: str, phase: Phase, cpu_pct: float, peak_mb: float) -> str:
    lat = sorted(phase.latencies_s)
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [0.0] * 99
    errors = ", ".join(f"{n} {k}" for k, n in phase.errors.items()) or "0"
    worst = lat[-1] * 1000 if lat else 0.0
    return (
        f"{name:<9} {len(lat):>7} {q[49] * 1000:>7.1f} {q[98] * 1000:>7.1f} "
        f"{_p99_ms(phase.heartbeat_s):>7.1f} {worst:>8.1f} {cpu_pct:>6.0f} {peak_mb:>9.0f}  "
        f"{errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stations", type=int, default=100, help="honest OCPP 1.6 stations")
    parser.add_argument("--period", type=float, default=1.0, help="s between a station's calls")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="attack duration")
    parser.add_argument(
        "--attacks",
        default=",".join(ATTACKS),
        help=f"comma-separated, from {', '.join(ATTACKS)}",
    )
    args = parser.parse_args()
    args.attacks = [a for a in args.attacks.split(",") if a]
    if unknown := set(args.attacks) - set(ATTACKS):
        parser.error(f"unknown attacks: {', '.join(sorted(unknown))}")

    with (
        tempfile.TemporaryDirectory(prefix="chargewatch-abuse-") as folder,
        served(Path(folder), args.stations) as target,
        MemoryWatch(target.pid) as memory,
    ):
        print(
            f"chargewatch serve (defaults, station auth on) on loopback; {args.stations} honest "
            f"OCPP 1.6 stations, a Heartbeat or MeterValues each every {args.period:g} s; "
            f"{args.baseline_seconds:g} s alone, then {args.seconds:g} s under: "
            f"{', '.join(args.attacks)}",
            flush=True,
        )
        baseline, attacked, results, figures = asyncio.run(measure(target, args, memory))
    print(
        f"{'phase':<9} {'calls':>7} {'p50 ms':>7} {'p99 ms':>7} {'hb p99':>7} {'max ms':>8} "
        f"{'cpu %':>6} {'peak MB':>9}  errors"
    )
    print(_row("alone", baseline, figures["baseline_cpu_pct"], figures["baseline_peak_mb"]))
    print(_row("attacked", attacked, figures["attack_cpu_pct"], figures["attack_peak_mb"]))
    print(
        f"peak MB: serve's resident memory with its batch workers, summed ("
        f"{figures['processes']:.0f} processes at the end; their high-water marks add up to "
        f"{figures['high_water_mb']:.0f} MB); targets: p99 < 100 ms, memory < 1024 MB"
    )
    for name in args.attacks:
        got = results.get(name, Counter())
        said = [f"{k} x{n}" if n else k for k, n in sorted(got.items())]  # n 0: a note
        print(f"{name}: " + ("; ".join(said) or "nothing"))


if __name__ == "__main__":
    main()
