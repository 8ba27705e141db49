"""Benchmark: one alert cycle of 100,000 active alerts across 10,000 stations, to a real
Alertmanager (Debian's 0.25, started here on loopback with the generated configuration).

Prints, per cycle, chargewatch's CPU time (process time: this process only, Alertmanager is
another) and wall time for each step: building the alerts from flags, the lifecycle decision
(``plan_cycle`` + ``settle``), encoding and POSTing them (``AlertmanagerClient.send``). After
the first cycle, steady cycles alternate between the baseline (the collector running through
the cycle, every alert's JSON encoded afresh: the code before the encoding cache) and the code
as it is now, ``--cycles`` of each, and their median CPU is compared; then
what writing and loading the alert state costs in SQLite; then the latency from a new
finding's cycle starting to its notification reaching a webhook receiver while the 100,000
others are sent every cycle (the bench config's ``group_wait`` is 1 s; in production add the
real ``group_wait`` minus 1 s, and up to one job interval until the next cycle). Asserts
nothing.

    .venv/bin/python bench/alerts.py [--alerts 100000] [--stations 10000] [--cycles 3]
                                     [--probes 5] [--no-store] [--mix plain|meter]

``--mix meter`` puts a meter_stuck and an early_taper on every connector: 20,000 sources and
20,000 targets of one inhibition rule, which Alertmanager 0.25 checks pairwise (its inhibitor
scans every source alert for each target: prometheus/alertmanager#4606, fixed by #4607).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.client import AlertmanagerClient, SendReport, postable
from alerts.collector import collector_paused
from alerts.config import Timings, Webhook, config_dict
from alerts.lifecycle import AlertRecord, Policy, Send, plan_cycle, settle
from alerts.model import Alert, FlagAlerts, Links
from alerts.server import LocalAlertmanager
from alerts.store import AlertStore
from chargewatch.flags import Flag
from chargewatch.influx.server import free_port
from chargewatch.state import StateStore

MIXES = {
    "plain": ("stall", "early_taper", "data_gap", "clock_fault", "soc_inconsistent"),
    "meter": ("stall", "early_taper", "meter_stuck", "data_gap", "clock_fault"),
}
NS = 1_000_000_000
FAST = Timings(group_wait="1s", group_interval="1s", repeat_interval="1h")
T = TypeVar("T")


@contextmanager
def timed(label: str, figures: dict[str, tuple[float, float]]) -> Iterator[None]:
    cpu, wall = time.process_time(), time.perf_counter()
    yield
    figures[label] = (time.process_time() - cpu, time.perf_counter() - wall)


def measure(label: str, figures: dict[str, tuple[float, float]], work: Callable[[], T]) -> T:
    with timed(label, figures):
        return work()


def fleet_flags(
    n_alerts: int, n_stations: int, start_ns: int, kinds: tuple[str, ...] = MIXES["plain"]
) -> list[Flag]:
    """``n_alerts`` flags over ``n_stations`` stations: connectors x kinds per station."""
    per_station = max(1, n_alerts // n_stations)
    flags = []
    for i in range(n_alerts):
        station, slot = divmod(i, per_station)
        connector, kind = divmod(slot, len(kinds))
        flags.append(
            Flag(
                session_id=f"CP-{station:05d}-{connector + 1}-{i}",
                station_id=f"CP-{station:05d}",
                connector_id=connector + 1,
                kind=kinds[kind],
                score=0.8 + (i % 20) / 100,
                start_ns=start_ns - (i % 600) * NS,
                end_ns=start_ns,
                reason="power 0.0 kW for 14 min while 22.0 kW was offered at SoC 41 %",
            )
        )
    return flags


def bench_config(webhook_url: str) -> str:
    """The generated configuration (notifying nobody), plus a first route sending the latency
    probes (stations ``probe-*``) to the receiver, with 1 s timings."""
    config: dict[str, Any] = config_dict(Webhook(url=None))
    config["receivers"].append({"name": "probe", "webhook_configs": [{"url": webhook_url}]})
    probe_route = {"receiver": "probe", "matchers": ['station_id=~"probe-.*"']}
    probe_route.update(group_wait=FAST.group_wait, group_interval=FAST.group_interval)
    probe_route["repeat_interval"] = FAST.repeat_interval
    config["route"]["routes"].insert(0, probe_route)
    return yaml.safe_dump(config, sort_keys=False)


class Arrivals:
    """A webhook receiver noting when each probe's notification arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.at: dict[str, float] = {}
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.perf_counter()
                for alert in body["alerts"]:
                    arrivals.at.setdefault(alert["labels"]["station_id"], now)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def baseline_send(client: AlertmanagerClient, sends: list[Send]) -> SendReport:
    """The send as it was before the encoding cache: a ``postable`` dict per alert and every
    chunk encoded afresh each cycle (the baseline the figures are compared with)."""
    alerts = [postable(send) for send in sends]
    starts = range(0, len(alerts), client.chunk)
    bodies = [orjson.dumps(alerts[i : i + client.chunk], option=orjson.OPT_UTC_Z) for i in starts]
    sizes = [min(client.chunk, len(alerts) - i) for i in starts]
    return SendReport(tuple(client._post_all(url, bodies, sizes) for url in client.urls))


def run_cycle(
    client: AlertmanagerClient,
    build: FlagAlerts,
    flags: list[Flag],
    state: dict[str, AlertRecord],
    now: datetime,
    policy: Policy,
    *,
    baseline: bool = False,
) -> tuple[dict[str, tuple[float, float]], dict[str, AlertRecord], list[AlertRecord], int]:
    """One cycle as ``AlertJob.run`` does it (the collector paused while computing); with
    ``baseline``, as it was before: the collector running, every alert encoded afresh."""
    figures: dict[str, tuple[float, float]] = {}
    fresh = [Flag(*astuple(f)) for f in flags]  # as a new query of the flags would return them
    paused = nullcontext() if baseline else collector_paused()
    with paused:
        with timed("build alerts", figures):
            build.next_cycle()
            alerts: list[Alert] = [build(f) for f in fresh]
        with timed("lifecycle", figures):
            cycle = plan_cycle(alerts, state, now=now, policy=policy)
            settled = settle(cycle, delivered=True)  # the send below is checked
    if baseline:
        report = measure("encode + send", figures, lambda: baseline_send(client, cycle.sends))
    else:
        report = measure("encode + send", figures, lambda: client.send(cycle.sends))
    if not report.delivered:
        raise SystemExit(f"send failed: {[str(d.error) for d in report.failures]}")
    return figures, settled.state, settled.changed, len(cycle.sends)


def show(title: str, figures: dict[str, tuple[float, float]]) -> None:
    total_cpu = sum(cpu for cpu, _ in figures.values())
    total_wall = sum(wall for _, wall in figures.values())
    parts = ", ".join(f"{k} {cpu:.2f}/{wall:.2f}" for k, (cpu, wall) in figures.items())
    print(f"{title}: CPU {total_cpu:.2f} s, wall {total_wall:.2f} s  ({parts}; CPU/wall s)")


def am_rss_mb(server: LocalAlertmanager) -> float:
    pid = server.pid
    if pid is None:
        return float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--stations", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--mix", choices=sorted(MIXES), default="plain")
    parser.add_argument("--no-store", action="store_true")
    args = parser.parse_args()

    policy = Policy(interval=timedelta(seconds=30))
    now = datetime.now(UTC)
    flags = fleet_flags(args.alerts, args.stations, int(now.timestamp()) * NS, MIXES[args.mix])
    arrivals = Arrivals()
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as folder:
        server = LocalAlertmanager(
            data_dir=Path(folder) / "am",
            port=free_port(),
            config=bench_config(f"http://127.0.0.1:{arrivals.port}/"),
        )
        server.start()
        try:
            with AlertmanagerClient([server.url], timeout_s=120.0) as client:
                state: dict[str, AlertRecord] = {}
                first_changed: list[AlertRecord] = []
                build = FlagAlerts(
                    Links(api_base="https://cw.example", grafana_base="https://grafana.example")
                )
                cpu: dict[bool, list[float]] = {False: [], True: []}
                for number in range(1 + 2 * args.cycles):
                    # after the first, steady cycles alternate: baseline, then as now
                    baseline = number % 2 == 1
                    cycle_now = datetime.now(UTC)  # real time: endsAt must not lapse
                    figures, state, changed, sent = run_cycle(
                        client, build, flags, state, cycle_now, policy, baseline=baseline
                    )
                    first_changed = first_changed or changed
                    kind = "first (all new)" if number == 0 else "steady (all active)"
                    how = "baseline" if baseline else "now"
                    show(f"cycle {number + 1}, {kind}, {sent:,} alerts, {how}", figures)
                    if number:
                        cpu[baseline].append(sum(c for c, _ in figures.values()))
                before, after = statistics.median(cpu[True]), statistics.median(cpu[False])
                print(
                    f"steady cycle CPU, median of {args.cycles}: baseline {before:.2f} s, "
                    f"now {after:.2f} s ({after / before:.2f} x; target under 1 s)"
                )
                held = client.alerts(active=True)
                sample = [
                    postable(s)
                    for s in plan_cycle(
                        [build(f) for f in flags[:1000]], {}, now=now, policy=policy
                    ).sends
                ]
                size = len(orjson.dumps(sample, option=orjson.OPT_UTC_Z)) / len(sample)
                print(
                    f"Alertmanager holds {len(held):,} active alerts, RSS "
                    f"{am_rss_mb(server):.0f} MB; {size:.0f} bytes of JSON per alert, "
                    f"{size * len(flags) / 1e6:.0f} MB a cycle"
                )
                if not args.no_store:
                    store_figures(Path(folder), first_changed, now, policy)
                if args.probes:
                    latency(client, build, flags, state, now, policy, arrivals, args)
        finally:
            server.stop()


def store_figures(folder: Path, records: list[AlertRecord], now: datetime, policy: Policy) -> None:
    state = StateStore(f"sqlite:///{folder / 'state.db'}")
    store = AlertStore(state.engine)
    figures: dict[str, tuple[float, float]] = {}
    measure("save all", figures, lambda: store.save(records))
    loaded = measure("load all", figures, lambda: store.load(now=now, policy=policy))
    state.close()
    show(
        f"SQLite alert state, {len(loaded):,} records (first start only; later cycles write "
        "changes)",
        figures,
    )


def latency(
    client: AlertmanagerClient,
    build: FlagAlerts,
    flags: list[Flag],
    state: dict[str, AlertRecord],
    now: datetime,
    policy: Policy,
    arrivals: Arrivals,
    args: argparse.Namespace,
) -> None:
    seconds = []
    for number in range(args.probes):
        station = f"probe-{number}"
        probe = Flag(f"{station}-1", station, 1, "stall", 0.9, 0, 0, "probe")
        cycle_now = datetime.now(UTC)
        started = time.perf_counter()
        build.next_cycle()
        alerts = [build(f) for f in (*flags, probe)]
        cycle = plan_cycle(alerts, state, now=cycle_now, policy=policy)
        if not client.send(cycle.sends).delivered:
            raise SystemExit("send failed")
        state = settle(cycle, delivered=True).state
        deadline = time.perf_counter() + 60
        while station not in arrivals.at and time.perf_counter() < deadline:
            time.sleep(0.01)
        if station in arrivals.at:
            seconds.append(arrivals.at[station] - started)
    seconds.sort()
    if not seconds:
        print("latency: no probe notification arrived within 60 s")
        return
    p95 = seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]
    print(
        f"latency, cycle start -> webhook, {len(seconds)} probes among {len(flags):,} alerts "
        f"(group_wait 1 s): p50 {statistics.median(seconds):.2f} s, p95 {p95:.2f} s, "
        f"max {seconds[-1]:.2f} s"
    )


if __name__ == "__main__":
    gc.collect()
    main()
