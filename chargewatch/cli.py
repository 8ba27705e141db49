"""The ``chargewatch`` command line (CONTRACTS.md section 5).

Each command builds the settings once, wires the stages it needs, and turns every
``ChargewatchError`` into one sentence on stderr and exit code 2: no tracebacks for users.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from chargewatch.errors import ChargewatchError, ConfigError
from chargewatch.events import EventDecoder
from chargewatch.influx import BatchWriter, InfluxClient, LocalInfluxd, find_or_install_influxd
from chargewatch.settings import Settings, influx_is_local, load_settings

app = typer.Typer(
    name="chargewatch",
    help="Monitoring for electric-vehicle charging networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
influxd_app = typer.Typer(help="A local InfluxDB for development and tests (no systemd).")
app.add_typer(influxd_app, name="influxd")

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_REJECTED = 1
EXIT_USAGE = 2
DEFAULT_SIMULATION_START = "2026-11-23T00:00:00Z"

T = TypeVar("T")


def fail(message: str) -> NoReturn:
    stderr.print(f"error: {message}", markup=False)
    raise typer.Exit(EXIT_USAGE)


def guarded(action: Callable[[], T]) -> T:
    """Run ``action``; a ``ChargewatchError`` becomes one sentence and exit code 2."""
    try:
        return action()
    except ChargewatchError as exc:
        fail(str(exc))


@contextmanager
def progress_bar(
    description: str, total: float | None, *, bytes_: bool = False
) -> Iterator[Callable[[float], None]]:
    """A rich progress bar on a terminal; nothing when output is piped."""
    if not stderr.is_terminal:
        yield lambda _done: None
        return
    columns = [TextColumn("{task.description}"), BarColumn()]
    columns += (
        [TransferSpeedColumn()] if bytes_ else [TextColumn("{task.completed:.0f}/{task.total:.0f}")]
    )
    with Progress(*columns, TimeRemainingColumn(), console=stderr, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.update(task, completed=done)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Events file to write (JSON Lines).")],
    labels: Annotated[Path, typer.Option("--labels", help="Ground-truth labels file to write.")],
    stations: Annotated[int, typer.Option(min=1, help="Number of stations.")] = 50,
    hours: Annotated[float, typer.Option(min=0.01, help="Simulated hours.")] = 24.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 0,
    start: Annotated[
        str, typer.Option(help="Start of the simulated window, RFC 3339 with a zone.")
    ] = DEFAULT_SIMULATION_START,
    anomaly_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of sessions given an anomaly.")
    ] = 0.05,
) -> None:
    """Write a realistic, labeled fleet in the event format (deterministic for a seed)."""
    from ingest.simulator import SimulationConfig
    from ingest.simulator import simulate as run_simulation

    try:
        start_at = datetime.fromisoformat(start)
    except ValueError:
        fail(f"--start {start!r} is not an RFC 3339 timestamp")
    if start_at.tzinfo is None:
        fail(f"--start {start!r} has no zone (add Z or an offset like +01:00)")
    config = SimulationConfig(
        stations=stations, hours=hours, seed=seed, start=start_at, anomaly_rate=anomaly_rate
    )
    began = time.perf_counter()
    try:
        with progress_bar("simulating stations", stations) as update:
            summary = run_simulation(
                config, out, labels, progress=lambda done, _total: update(done)
            )
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {exc.filename}: {exc.strerror}")
    elapsed_s = time.perf_counter() - began
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(summary.labels_by_kind.items()))
    stdout.print(
        f"simulated {stations} stations x {hours:g} h: {summary.events} events, "
        f"{summary.sessions} sessions, labels: {kinds or 'none'} ({elapsed_s:.1f} s)",
        markup=False,
    )


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="Event file (JSON Lines, .gz allowed).")],
) -> None:
    """Load an event file into InfluxDB. Exit 0: all written; 1: some lines rejected."""
    from ingest.encode import Rejection
    from ingest.files import IngestReport, ingest_stream, open_events
    from ingest.pseudonym import load_pseudonymizer

    settings = guarded(load_settings)
    if not path.is_file():
        fail(f"{path}: no such file")
    pseudonymizer = guarded(lambda: load_pseudonymizer(settings))
    client = InfluxClient.from_settings(settings)
    report = IngestReport()

    def on_reject(rejection: Rejection) -> None:
        stdout.print(f"rejected {rejection}", markup=False)

    def run() -> None:
        client.ping()
        client.create_database()
        with (
            open_events(path) as stream,
            BatchWriter(client, batch_lines=settings.influx_batch_lines) as writer,
            progress_bar(f"ingesting {path.name}", path.stat().st_size, bytes_=True) as update,
        ):
            ingest_stream(
                stream,
                decoder=EventDecoder(pseudonymizer),
                sink=writer,
                on_reject=on_reject,
                on_progress=update,
                report=report,
            )

    began = time.perf_counter()
    try:
        run()
    except ChargewatchError as exc:
        fail(
            f"{exc} (stopped after line {report.lines}; loading the file again is safe, "
            "points already written are overwritten, not doubled)"
        )
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    finally:
        client.close()
    stdout.print(f"{report.summary()} in {time.perf_counter() - began:.1f} s", markup=False)
    if report.rejected:
        raise typer.Exit(EXIT_REJECTED)


def _local_influxd(settings: Settings, data_dir: Path | None) -> LocalInfluxd:
    url = urlsplit(settings.influx_url)
    if not influx_is_local(settings):
        raise ConfigError(
            f"CHARGEWATCH_INFLUX_URL points at {url.hostname}; "
            "a local InfluxDB runs on loopback only"
        )
    return LocalInfluxd(data_dir=data_dir or settings.data_dir / "influxdb", port=url.port or 8086)


DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Where InfluxDB keeps its files.")
]


@influxd_app.command("start")
def influxd_start(data_dir: DataDirOption = None) -> None:
    """Install InfluxDB if missing, start it on the URL's port, create the database."""

    def run() -> str:
        settings = load_settings()
        find_or_install_influxd()
        server = _local_influxd(settings, data_dir)
        server.start()
        with InfluxClient.from_settings(settings) as client:
            client.create_database()
        return server.url

    stdout.print(f"InfluxDB running at {guarded(run)}", markup=False)


@influxd_app.command("stop")
def influxd_stop(data_dir: DataDirOption = None) -> None:
    """Stop the local InfluxDB started by ``influxd start``."""
    guarded(lambda: _local_influxd(load_settings(), data_dir).stop())
    stdout.print("InfluxDB stopped", markup=False)


@influxd_app.command("status")
def influxd_status(data_dir: DataDirOption = None) -> None:
    """Say whether the local InfluxDB is running (exit 1 when it is not)."""
    server = guarded(lambda: _local_influxd(load_settings(), data_dir))
    if server.is_running():
        stdout.print(f"InfluxDB running at {server.url}", markup=False)
    else:
        stdout.print("InfluxDB not running", markup=False)
        raise typer.Exit(1)


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app()


if __name__ == "__main__":
    main()
