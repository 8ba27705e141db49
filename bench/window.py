"""Benchmark: the scheduled job's time and peak memory against the file path, same events.

A simulated fleet is loaded into a private InfluxDB with ``chargewatch ingest``'s code, then each
of these runs in a child process of its own (its peak memory is the child's own, ``VmHWM``):

- ``file``: the file path, ``detect --input`` (the baseline);
- ``range``: ``detect --since/--until`` over the whole fleet as one window;
- ``job``: the scheduled job window by window, every ``--interval-s`` (as ``serve`` runs it),
  timed per window;
- ``last``: the job's last window alone (one job interval at the end of the data, its look-back
  included): what one interval costs for the network;
- ``reads``: the job's reads alone, window by window (sessions, readings with the reading cache,
  statuses, authorizations), nothing judged or written: the floor of any job that reads each
  window back from InfluxDB (whose every query costs about the same per series touched, however
  short its time range).

``--fleet-file EVENTS.jsonl`` takes a given event file (``bench/blind_fleet.py``'s, say) instead of
simulating one; the span judged is then the file's (``bench._fleet.fleet_span``). ``--compare``
prints the (session, kind) pairs (the station and connector for energy outside sessions) that
only some of ``file``, ``range`` and ``job`` find: the file path's flags as it returns them, the
others' as stored, read back as ``chargewatch flags`` reads them (each of those modes then gets a
database of its own, loaded with the same events, so one run's stored flags are not the other's).

Prints each run's seconds and peak RSS, and the ratios against the file path (targets: the job
at most 1.5x the file path's time; 300 stations x 24 h in at most 500 MB; 10,000 stations at one
interval in at most 1 GB); and the CPU seconds each run took, its own and InfluxDB's (read from
``/proc`` before and after): on a machine other work shares, the wall clock measures the
neighbours too, CPU time much less.

    .venv/bin/python bench/window.py [--stations 300] [--hours 24] [--interval-s 300] [--profile P]
        [--sample-s 900]
    .venv/bin/python bench/window.py --stations 10000 --hours 2 --start 2026-11-23T16:00:00Z \
        --modes last
    .venv/bin/python bench/window.py --fleet-file /tmp/par/ev.jsonl --modes file,range,job \
        --compare
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._fleet import fleet_span, load_fleet, own_peak_mb, simulate_fleet
from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.influx.server import free_port

KEY = b"bench-window-key-0123456789abcdef"
NS = 1_000_000_000
COMPARED = ("file", "range", "job")  # the modes that judge the whole span (--compare)


def thin_readings(events: Path, sample_s: float) -> int:
    """Keep a connector's readings at least ``sample_s`` apart (in file order; a reading
    stamped before the last one kept stays: a wrong clock is no sample to thin), as from
    chargers that sample less often than the job runs (OCPP clock-aligned meter values every
    15 minutes: 900). Rewrites ``events``; how many readings were left out."""
    from chargewatch.events import parse_ts

    kept: list[bytes] = []
    last: dict[tuple[str, int], int] = {}
    dropped = 0
    step = int(sample_s * NS)
    with events.open("rb") as stream:
        for line in stream:
            event = json.loads(line)
            if event.get("type") == "reading":
                key = (str(event.get("station_id")), int(event.get("connector_id") or 0))
                at = parse_ts(event["ts"])
                before = last.get(key)
                if before is not None and before <= at < before + step:
                    dropped += 1
                    continue
                if before is None or at >= before:
                    last[key] = at
            kept.append(line)
    events.write_bytes(b"".join(kept))
    return dropped


def child(mode: str, events: Path, url: str, database: str, args: argparse.Namespace) -> None:
    """One measured run (imports and set-up not counted); prints a JSON line of what it did."""
    from analytics.jobs import DetectionJob
    from analytics.pipeline import detect_stream
    from analytics.window import detect_window
    from chargewatch.events import EventDecoder
    from chargewatch.state import StateStore
    from ingest.pseudonym import Pseudonymizer

    decoder = EventDecoder(Pseudonymizer(KEY))
    begin = int(datetime.fromisoformat(args.start).timestamp()) * NS
    end = begin + int(args.hours * 3600) * NS
    out: dict[str, object] = {"mode": mode}
    client = InfluxClient(url=url, database=database)
    state = StateStore(f"sqlite:///{tempfile.mkdtemp()}/state.db")
    interval = args.interval_s
    job = DetectionJob(
        client,
        state,
        settle_s=0,
        first_lookback_s=interval if mode == "last" else (end - begin) / NS,
        max_window_s=interval,
    )
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    began, cpu_began = time.perf_counter(), time.process_time()
    if mode == "file":
        with events.open("rb") as stream:
            flags, _ = detect_stream(stream, decoder=decoder)
        out["flags"] = len(flags)
    elif mode == "reads":
        out["windows"] = reads_only(client, begin, end, int(interval * NS))
    elif mode == "range":
        flags, _ = detect_window(client, begin, end, catalog=state)
        out["flags"] = len(flags)
    else:
        reports = job.run(end)
        seconds = sorted(r.seconds for r in reports)
        out["windows"] = len(reports)
        out["window_s_median"] = seconds[len(seconds) // 2]
        out["window_s_max"] = seconds[-1]
        out["flags"] = sum(sum(r.flags_by_kind.values()) for r in reports)
        # sessions judged, summed over the windows: an open session counts at every window
        # that judges it again (one whose verdict holds is left: analytics.window._Verdicts)
        out["judged"] = sum(r.sessions for r in reports)
    out["seconds"] = time.perf_counter() - began
    out["cpu_s"] = time.process_time() - cpu_began
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    if args.compare and mode in COMPARED:
        out["pairs"] = sorted(pairs(flags if mode == "file" else stored_flags(client)))
    state.close()
    client.close()
    out["peak_mb"] = own_peak_mb()
    print(json.dumps(out))


def pairs(flags: Any) -> set[tuple[str, str]]:
    """(session id, or station/connector for energy outside sessions; kind) of ``flags``."""
    return {(f.session_id or f"{f.station_id}/{f.connector_id}", f.kind) for f in flags}


def stored_flags(client: Any) -> Any:
    """Every flag stored in ``client``'s database, read as ``chargewatch flags`` reads a window
    (``query_flags``), over all the times InfluxDB holds: a wrong clock's flag may start in 1970
    or years ahead."""
    from chargewatch.flags import query_flags
    from chargewatch.influx.lineprotocol import TIMESTAMP_LIMIT_NS

    return query_flags(client, -TIMESTAMP_LIMIT_NS, TIMESTAMP_LIMIT_NS)


def reads_only(client: Any, begin: int, end: int, interval_ns: int) -> int:
    """What ``detect_window`` reads, window by window over ``[begin, end)`` as the job runs it
    (a partition's reading cache kept from one window to the next); how many windows."""
    from analytics.read.partition import (
        list_stations,
        read_partition,
        read_sessions,
        station_partitions,
    )
    from analytics.window import PARTITION_STATIONS, WINDOW_LOOKBACK

    caches: dict[tuple[str, ...], Any] = {}
    windows = 0
    for since in range(begin, end, interval_ns):
        until = min(since + interval_ns, end)
        for part in station_partitions(list_stations(client), PARTITION_STATIONS):
            found = read_sessions(client, part, since, until, lookback=WINDOW_LOOKBACK)
            _events, caches[part] = read_partition(
                client, part, found, since, until, lookback=WINDOW_LOOKBACK, cache=caches.get(part)
            )
        windows += 1
    return windows


def process_cpu_s(pid: int | None) -> float:
    """The CPU seconds (user and system) process ``pid`` has used so far; 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    mode: str,
    events: Path,
    url: str,
    database: str,
    args: argparse.Namespace,
    influxd_pid: int | None = None,
) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--events", str(events)]
    command += ["--url", url, "--database", database, "--hours", str(args.hours)]
    command += ["--interval-s", str(args.interval_s), "--start", args.start]
    command += ["--compare"] if args.compare else []
    command += ["--profile", f"{args.profile}.{mode}"] if args.profile else []
    influxd_before = process_cpu_s(influxd_pid)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status = os.waitpid(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed ({proc.returncode})")
    found: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    found["max_rss_mb"] = found.pop("peak_mb")  # the child's own (``own_peak_mb``)
    found["influxd_cpu_s"] = process_cpu_s(influxd_pid) - influxd_before
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=300)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--interval-s", type=float, default=300.0)
    parser.add_argument("--start", default="2026-11-23T00:00:00+00:00")
    parser.add_argument("--modes", default="file,range,job,last")
    parser.add_argument(
        "--sample-s", type=float, default=0.0, help="thin readings to this interval (900)"
    )
    parser.add_argument(
        "--fleet-file", type=Path, help="an event file to judge instead of a simulated fleet"
    )
    parser.add_argument(
        "--compare", action="store_true", help="print the pairs only some of file/range/job find"
    )
    parser.add_argument(
        "--profile", help="write each mode's cProfile statistics to PROFILE.<mode> (pstats)"
    )
    parser.add_argument("--child")
    parser.add_argument("--events", type=Path)
    parser.add_argument("--url")
    parser.add_argument("--database")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.events, args.url, args.database, args)
        return
    modes = args.modes.split(",")
    # one database for all, unless the stored flags of each mode are compared
    databases = {m: f"bench_{m}" if args.compare and m in COMPARED[1:] else "bench" for m in modes}
    with tempfile.TemporaryDirectory(prefix="bench-window-") as tmp:
        folder = Path(tmp)
        if args.fleet_file is not None:
            events = folder / "fleet.jsonl"  # a copy: thinning rewrites it
            events.write_bytes(args.fleet_file.read_bytes())
            begin, end, args.stations = fleet_span(events)
            args.start = datetime.fromtimestamp(begin // NS, UTC).isoformat()
            args.hours = (end - begin) / (3600 * NS)
        else:
            events = simulate_fleet(folder, args.stations, args.hours, seed=11, start=args.start)
        if args.sample_s:
            thinned = thin_readings(events, args.sample_s)
            print(f"readings thinned to {args.sample_s:g} s: {thinned} left out")
        lines = sum(1 for _ in events.open("rb"))
        server = LocalInfluxd(data_dir=folder / "influxdb", port=free_port())
        server.start()
        try:
            loaded = 0.0
            for database in sorted(set(databases.values())):
                client = InfluxClient(url=server.url, database=database)
                client.create_database()
                loaded = load_fleet(events, client, KEY)
                client.close()
            span = f" from {args.start}" if args.fleet_file is not None else ""
            each = (
                f" (into each of {len(set(databases.values()))} databases)" if args.compare else ""
            )
            print(
                f"{args.stations} stations x {args.hours:g} h{span}: {lines} events, "
                f"loaded in {loaded:.1f} s{each}; job interval {args.interval_s:g} s"
            )
            results = {
                mode: measure(mode, events, server.url, databases[mode], args, server.pid)
                for mode in modes
            }
        finally:
            server.stop()
    base = results.get("file")
    for mode, r in results.items():
        line = f"{mode:>6}: {r['seconds']:7.1f} s, peak RSS {r['max_rss_mb']:7.0f} MB"
        line += f", {r['flags']} flags" if "flags" in r else ""
        if "window_s_median" in r:
            line += (
                f", {r['windows']} windows (median {r['window_s_median']:.2f} s, "
                f"max {r['window_s_max']:.2f} s), {r['judged']} sessions judged"
            )
        elif "windows" in r:
            line += f", {r['windows']} windows"
        if base is not None and mode != "file":
            line += (
                f"; x{r['seconds'] / base['seconds']:.2f} the file path's time, "
                f"x{r['max_rss_mb'] / base['max_rss_mb']:.2f} its memory"
            )
        print(line)
        cpu = r["cpu_s"] + r["influxd_cpu_s"]
        line = f"{'':>8}CPU {r['cpu_s']:.1f} s + InfluxDB {r['influxd_cpu_s']:.1f} s = {cpu:.1f} s"
        if base is not None and mode != "file":
            # the file path does not use InfluxDB: what it did meanwhile is not the path's
            line += f"; x{cpu / base['cpu_s']:.2f} the file path's CPU"
        print(line)
    if args.compare:
        print_differences(results)


def print_differences(results: dict[str, dict[str, Any]]) -> None:
    """Each compared mode's count of (session, kind) pairs, then every pair that only some of
    them find, with the modes that find it."""
    found = {
        mode: {(str(s), str(k)) for s, k in r["pairs"]}
        for mode, r in results.items()
        if "pairs" in r
    }
    print("pairs: " + ", ".join(f"{mode} {len(p)}" for mode, p in found.items()))
    every = set.intersection(*found.values()) if found else set()
    apart = sorted(set().union(*found.values()) - every, key=lambda p: (p[1], p[0]))
    print(f"{len(apart)} pairs found by only some of {', '.join(found)}")
    for session, kind in apart:
        by = [mode for mode, p in found.items() if (session, kind) in p]
        print(f"  {kind:<20} {session}: only {'+'.join(by)}")


if __name__ == "__main__":
    main()
