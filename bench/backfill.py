"""Benchmark: a backfill on the local Dask cluster, its time and peak memory, against one process.

A simulated fleet of ``--stations`` x ``--days`` is loaded into a private InfluxDB with
``chargewatch ingest``'s code; then, each in a child process of its own (imports and set-up not
timed):

- ``dask``: ``analytics.backfill`` on a local cluster of ``--workers`` processes (what
  ``detect --since/--until --dask`` runs): its seconds from the first task submitted to the last
  result, and its peak memory, the sum of every worker's max RSS and the child's own (the client
  and the scheduler);
- ``one`` (with ``--compare``): ``detect_window`` over the same range in one process, what
  ``detect --since/--until`` runs; its max RSS.

Prints each run's seconds, peak memory, tasks, sessions and flags, the ratios, and whether both
stored the same (session, kind) flags.

    .venv/bin/python bench/backfill.py [--stations 500] [--days 30] [--workers 2] [--compare]
    .venv/bin/python bench/backfill.py --stations 100 --days 7 --compare
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._fleet import load_fleet, own_peak_mb, simulate_fleet
from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.influx.server import free_port

KEY = b"bench-backfill-key-0123456789abcdef"
NS = 1_000_000_000


def child(mode: str, url: str, database: str, state: Path, args: argparse.Namespace) -> None:
    """One measured run; prints a JSON line of what it did."""
    from analytics.backfill import Source, backfill, local_cluster
    from analytics.window import detect_window
    from chargewatch.flags import Flag
    from chargewatch.state import StateStore

    since = int(datetime.fromisoformat(args.start).timestamp()) * NS
    until = since + args.days * 86_400 * NS
    out: dict[str, Any] = {"mode": mode}
    flags: list[Flag]
    if mode == "dask":
        source = Source(influx_url=url, influx_database=database, state_db_url=f"sqlite:///{state}")
        with local_cluster(args.workers) as client:
            # the workers are up and have imported the detectors before the clock starts
            client.run(importlib.import_module, "analytics.backfill")
            began = time.perf_counter()
            report = backfill(client, source, since, until)
            out["seconds"] = time.perf_counter() - began
            workers = client.run(own_peak_mb)
        flags = report.flags
        out["tasks"] = report.progress.tasks
        out["task_seconds"] = report.task_seconds
        out["sessions"] = report.progress.sessions
        out["worker_rss_mb"] = sorted(workers.values())
        out["client_rss_mb"] = own_peak_mb()
        out["max_rss_mb"] = sum(workers.values()) + out["client_rss_mb"]
    else:
        store = StateStore(f"sqlite:///{state}")
        with InfluxClient(url=url, database=database) as influx:
            began = time.perf_counter()
            flags, found = detect_window(influx, since, until, catalog=store)
            out["seconds"] = time.perf_counter() - began
        store.close()
        out["tasks"] = 1
        out["sessions"] = found.sessions
        out["max_rss_mb"] = own_peak_mb()
    out["flags"] = len(flags)
    out["pairs"] = sorted(
        {
            f"{f.session_id or f'{f.station_id}/{f.connector_id}@{f.start_ns}'} {f.kind}"
            for f in flags
        }
    )
    print(json.dumps(out))


def measure(mode: str, url: str, state: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--url", url, "--state", str(state)]
    command += ["--days", str(args.days), "--start", args.start, "--workers", str(args.workers)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status = os.waitpid(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{mode} run failed ({os.waitstatus_to_exitcode(status)})")
    found: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--start", default="2026-11-01T00:00:00+00:00")
    parser.add_argument("--compare", action="store_true", help="also one process, for a ratio")
    parser.add_argument("--child")
    parser.add_argument("--url")
    parser.add_argument("--state", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, "bench", args.state, args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        events = simulate_fleet(folder, args.stations, args.days * 24, seed=23, start=args.start)
        lines = sum(1 for _ in events.open("rb"))
        simulated = time.perf_counter() - began
        server = LocalInfluxd(data_dir=folder / "influxdb", port=free_port())
        server.start()
        try:
            client = InfluxClient(url=server.url, database="bench")
            client.create_database()
            loaded = load_fleet(events, client, KEY)
            client.close()
            events.unlink()  # the file is not needed again; the disk is shared
            print(
                f"{args.stations} stations x {args.days} days: {lines} events, simulated in "
                f"{simulated:.0f} s, loaded in {loaded:.0f} s; {args.workers} workers",
                flush=True,
            )
            results = {"dask": measure("dask", server.url, folder / "dask.db", args)}
            if args.compare:
                results["one"] = measure("one", server.url, folder / "one.db", args)
        finally:
            server.stop()
    for mode, r in results.items():
        line = (
            f"{mode:>4}: {r['seconds']:7.1f} s, peak memory {r['max_rss_mb']:6.0f} MB, "
            f"{r['tasks']} tasks, {r['sessions']} sessions, {r['flags']} flags"
        )
        if mode == "dask":
            workers = ", ".join(f"{mb:.0f}" for mb in r["worker_rss_mb"])
            line += f" (workers {workers} MB, client and scheduler {r['client_rss_mb']:.0f} MB)"
            line += f"; tasks' own time {r['task_seconds']:.1f} s"
        print(line)
    if "one" in results:
        dask, one = results["dask"], results["one"]
        same = dask["pairs"] == one["pairs"]
        print(
            f"dask / one process: x{dask['seconds'] / one['seconds']:.2f} the time, "
            f"x{dask['max_rss_mb'] / one['max_rss_mb']:.2f} the memory; "
            f"same (session, kind) flags: {'yes' if same else 'no'}"
        )
        if not same:
            only_one = sorted(set(one["pairs"]) - set(dask["pairs"]))
            only_dask = sorted(set(dask["pairs"]) - set(one["pairs"]))
            print(f"  only in one process ({len(only_one)}): {only_one[:10]}")
            print(f"  only in the backfill ({len(only_dask)}): {only_dask[:10]}")


if __name__ == "__main__":
    main()
