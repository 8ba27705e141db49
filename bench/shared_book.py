"""Benchmark: what keeping the OCPP transaction book in the state database costs.

Each of N stations runs the book's calls of one 1.6 session, in order as a station's messages
are: it (re)connects (``station_connected``: a shared book drops its cache of the station, so
the first call loads it from the database), StartTransaction (``start``), ``--readings``
MeterValues without a transaction id (``open_on``), StopTransaction (``get``, ``close``). First
one station after another (each call's own cost), then all at once (a burst, as after an
outage: the calls queue for the worker threads).

Three books: ``LocalBook`` (memory only: the baseline), ``SharedBook`` on SQLite (a file in a
temporary folder), ``SharedBook`` on the PostgreSQL of this machine (127.0.0.1:5432, a
database of its own, dropped afterwards; left out when absent). The id counter is the state
database's in every case (the local book calls it on the event loop, as serve did before the
shared book). Prints sessions/s, p50/p99 latency per call kind, and each shared book's wall
time as a ratio to the local one measured in the same run. Asserts nothing.

    .venv/bin/python bench/shared_book.py [--stations 500] [--readings 10]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path and its name would shadow the `ingest` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Iterator
from typing import TypeVar

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from chargewatch.state import StateStore
from ingest.ocppj.book import Book, LocalBook, StartKey
from ingest.ocppj.shared_book import SharedBook

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_T = TypeVar("_T")


class Timings:
    def __init__(self) -> None:
        self.ms: defaultdict[str, list[float]] = defaultdict(list)

    async def timed(self, kind: str, call: Awaitable[_T]) -> _T:
        began = time.perf_counter()
        result = await call
        self.ms[kind].append((time.perf_counter() - began) * 1000)
        return result


async def _session(book: Book, store: StateStore, station: str, readings: int, t: Timings) -> None:
    book.station_connected(station)
    key = StartKey(1, "0" * 32, 1_795_508_100_000_000_000, 1000)
    tx_id = await t.timed("start", book.start(station, key, store.next_value))
    for _ in range(readings):
        assert await t.timed("open_on", book.open_on(station, 1)) == str(tx_id)
        await asyncio.sleep(0)  # other stations' messages come between
    assert await t.timed("get", book.get(station, str(tx_id))) is not None
    await t.timed("close", book.close(station, str(tx_id)))
    book.station_gone(station)


async def _run(
    book: Book, store: StateStore, stations: int, readings: int, *, at_once: bool
) -> tuple[float, Timings]:
    """All stations' sessions at once (a burst: the calls queue for the worker threads), or
    one station after another (each call's own cost)."""
    timings = Timings()
    sessions = (_session(book, store, f"CP-{i}", readings, timings) for i in range(stations))
    began = time.perf_counter()
    if at_once:
        await asyncio.gather(*sessions)
    else:
        for session in sessions:
            await session
    return time.perf_counter() - began, timings


@contextlib.contextmanager
def _postgres() -> Iterator[str | None]:
    name = f"cw_bench_book_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError:
        admin.dispose()
        yield None
        return
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def _report(name: str, wall_s: float, t: Timings, stations: int, baseline: float | None) -> None:
    ratio = f"  {wall_s / baseline:5.1f}x local" if baseline else ""
    print(f"{name:<20} {stations / wall_s:8.0f} sessions/s  wall {wall_s:6.2f} s{ratio}")
    for kind, values in t.ms.items():
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        print(f"    {kind:<8} p50 {statistics.median(values):7.3f} ms   p99 {p99:7.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--readings", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, _postgres() as pg_url:
        urls = {"local (memory)": f"sqlite:///{folder}/local.db"}
        urls["shared, SQLite"] = f"sqlite:///{folder}/shared.db"
        if pg_url is not None:
            urls["shared, PostgreSQL"] = pg_url
        else:
            print("no PostgreSQL on 127.0.0.1:5432: its row is left out")
        for at_once in (False, True):
            print("all stations at once" if at_once else "one station after another")
            baseline = None
            for name, url in urls.items():
                store = StateStore(url)
                book: Book = LocalBook() if name.startswith("local") else SharedBook(store.engine)
                run = _run(book, store, args.stations, args.readings, at_once=at_once)
                wall_s, timings = asyncio.run(run)
                _report(name, wall_s, timings, args.stations, baseline)
                baseline = baseline or wall_s
                book.shutdown()
                store.close()


if __name__ == "__main__":
    main()
