"""Benchmark: what the detection job's partition leases cost each run, in the state database.

``--instances`` instances share ``--partitions`` partitions (``chargewatch.leases.PartitionShare``)
on virtual time: each "run" every instance balances once (presence, renewal, fair share), in
turn, as their runs would interleave. Measured: the steady-state balance (nothing changes hands),
and the run at which one instance, dead, has its partitions taken by the others. On SQLite (a
file in a temporary folder) and on the PostgreSQL of this machine (127.0.0.1:5432, a database of
its own, dropped afterwards; left out when absent). Prints milliseconds per balance (p50, max)
and the per-run cost as a ratio to one cursor read and write, the job's state-database work
per window before leases, measured in the same run. Asserts nothing.

    .venv/bin/python bench/leases.py [--instances 4] [--partitions 16] [--runs 50]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path and its name would shadow the packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from chargewatch.leases import LeaseBook, PartitionShare
from chargewatch.state import StateStore

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
S = 1_000_000_000
INTERVAL = 30 * S
T0 = 1_795_000_000 * S


@contextlib.contextmanager
def postgres() -> Iterator[str | None]:
    name = f"cw_bench_leases_{uuid.uuid4().hex[:8]}"
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


def measure(url: str, instances: int, partitions: int, runs: int) -> dict[str, float]:
    stores = [StateStore(url) for _ in range(instances)]
    shares = [
        PartitionShare(LeaseBook(store, f"i{k}", ttl_ns=2 * INTERVAL), "detect", partitions)
        for k, store in enumerate(stores)
    ]
    steady: list[float] = []
    for r in range(runs):
        for share in shares:
            began = time.perf_counter()
            share.balance(T0 + r * INTERVAL)
            if r >= 3:  # settled: every instance at its fair share
                steady.append(time.perf_counter() - began)
    # the last instance dies: the others take its partitions once its leases expired
    takeover: list[float] = []
    for r in range(runs, runs + 4):
        for share in shares[:-1]:
            began = time.perf_counter()
            share.balance(T0 + r * INTERVAL)
            takeover.append(time.perf_counter() - began)
    cursor: list[float] = []
    for k in range(runs):
        began = time.perf_counter()
        stores[0].cursor("detect:p00")
        stores[0].set_cursor("detect:p00", T0 + k)
        cursor.append(time.perf_counter() - began)
    for store in stores:
        store.close()
    base = statistics.median(cursor)
    return {
        "balance_p50_ms": statistics.median(steady) * 1e3,
        "balance_max_ms": max(steady) * 1e3,
        "takeover_run_max_ms": max(takeover) * 1e3,
        "cursor_p50_ms": base * 1e3,
        "balance_over_cursor": statistics.median(steady) / base,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, postgres() as pg:
        urls = {"sqlite": f"sqlite:///{folder}/state.db"}
        if pg is not None:
            urls["postgresql"] = pg
        for name, url in urls.items():
            figures = measure(url, args.instances, args.partitions, args.runs)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
            print(f"{name}: {args.instances} instances, {args.partitions} partitions: {shown}")


if __name__ == "__main__":
    main()
