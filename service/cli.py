"""The ``chargewatch`` command line (CONTRACTS.md section 5).

Each command builds the settings once, wires the stages it needs, and turns every
``ChargewatchError`` into one sentence on stderr and exit code 2: no tracebacks for users.
"""

from __future__ import annotations

import logging
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console

from chargewatch.errors import ChargewatchError, ConfigError
from chargewatch.events import EventDecoder
from chargewatch.roles import Role
from chargewatch.settings import Settings, influx_is_local, load_settings
from service.cli_export import add_export_commands
from service.cli_models import add_model_commands
from service.cli_stations import add_station_commands
from service.cli_verdicts import add_verdict_commands

# InfluxDB's client and the state database are imported where they are used: `detect --input`,
# `simulate` and `evaluate` need neither, and their libraries take a third of a second to load.
if TYPE_CHECKING:
    from alerts.server import LocalAlertmanager
    from chargewatch.influx import LocalInfluxd
    from chargewatch.sites import StationMetadata
    from models.evaluate import Evaluation

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
SHOW_REJECTED = 100  # rejected lines printed; a file of bad lines must not print without end
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
    # imported here: a piped run (a script, a job) never draws a bar, nor loads its code
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

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
    live: Annotated[
        str | None,
        typer.Option(help="Also drive a running service over OCPP, e.g. ws://127.0.0.1:8000/ocpp"),
    ] = None,
    speed: Annotated[
        float, typer.Option(min=0.001, help="With --live: simulated seconds per real second.")
    ] = 60.0,
    stations_out: Annotated[
        Path | None,
        typer.Option("--stations-out", help="Also write the stations' sites and ratings (CSV)."),
    ] = None,
    close_open: Annotated[
        bool,
        typer.Option(
            "--close-open",
            help="Stop the sessions still charging a minute before the end (no open sessions).",
        ),
    ] = False,
) -> None:
    """Write a realistic, labeled fleet in the event format (deterministic for a seed);
    with --live, then replay it to a running service, one OCPP WebSocket per station."""
    try:
        from simulator import SimulationConfig
        from simulator import simulate as run_simulation
    except ImportError as exc:  # the simulator's extra (scipy) is not installed
        fail(str(exc))

    try:
        start_at = datetime.fromisoformat(start)
    except ValueError:
        fail(f"--start {start!r} is not an RFC 3339 timestamp")
    if start_at.tzinfo is None:
        fail(f"--start {start!r} has no zone (add Z or an offset like +01:00)")
    config = SimulationConfig(
        stations=stations,
        hours=hours,
        seed=seed,
        start=start_at,
        anomaly_rate=anomaly_rate,
        close_at_end=close_open,
    )
    began = time.perf_counter()
    try:
        with progress_bar("simulating stations", stations) as update:
            summary = run_simulation(
                config,
                out,
                labels,
                progress=lambda done, _total: update(done),
                stations_path=stations_out,
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
    if live is not None:
        _replay_live(live, out, speed)


def _replay_live(url: str, events: Path, speed: float) -> None:
    import asyncio

    from simulator.live import run_live

    try:
        summary = asyncio.run(run_live(url, events, speed=speed))
    except (OSError, ValueError) as exc:
        fail(f"cannot drive {url}: {exc}")
    errors = ", ".join(f"{n} {code}" for code, n in sorted(summary.call_errors.items()))
    stdout.print(
        f"replayed {summary.events} events over OCPP from {summary.stations} stations "
        f"({summary.stations_failed} failed), {summary.messages} messages, "
        f"CallErrors: {errors or 'none'} ({summary.wall_s:.1f} s)",
        markup=False,
    )
    if summary.stations_failed:
        raise typer.Exit(EXIT_REJECTED)


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="Event file (JSON Lines, .gz allowed).")],
    show_rejected: Annotated[
        int, typer.Option(min=0, help="Print at most this many rejected lines (all are counted).")
    ] = SHOW_REJECTED,
) -> None:
    """Load an event file into InfluxDB. Exit 0: all written; 1: some lines rejected."""
    from chargewatch.influx import BatchWriter, InfluxClient
    from ingest.encode import Rejection
    from ingest.files import IngestReport, event_file_problem, ingest_stream, open_events
    from ingest.pseudonym import load_pseudonymizer

    settings = guarded(load_settings)
    if (problem := event_file_problem(path)) is not None:
        fail(f"{path}: {problem}")
    pseudonymizer = guarded(lambda: load_pseudonymizer(settings))
    client = InfluxClient.from_settings(settings)
    report = IngestReport()
    rejections = _RejectedLines(show_rejected)

    def on_reject(rejection: Rejection) -> None:
        rejections.show(str(rejection))

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
        rejections.print_rest()
        fail(
            f"{exc} (stopped after line {report.lines}; loading the file again is safe, "
            "points already written are overwritten, not doubled)"
        )
    except (OSError, EOFError, zlib.error) as exc:  # gzip: corrupt, cut short
        rejections.print_rest()
        fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    finally:
        client.close()
    rejections.print_rest()
    stdout.print(f"{report.summary()} in {time.perf_counter() - began:.1f} s", markup=False)
    if report.rejected:
        raise typer.Exit(EXIT_REJECTED)


class _RejectedLines:
    """Prints the first ``limit`` rejected lines and counts the others."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def show(self, text: str) -> None:
        if self.count < self.limit:
            stdout.print(f"rejected {text}", markup=False)
        self.count += 1

    def print_rest(self) -> None:
        if self.count > self.limit:
            hidden = self.count - self.limit
            stdout.print(f"... and {hidden} more rejected lines, not shown", markup=False)
            self.limit = self.count  # said once


def _window(since: str | None, until: str | None) -> tuple[int, int]:
    """``--since``/``--until`` as ns; both are required and since must come first."""
    from chargewatch.events import parse_ts

    if since is None or until is None:
        fail("give both --since and --until (RFC 3339 with a zone)")
    since_ns = guarded(lambda: parse_ts(since, "--since"))
    until_ns = guarded(lambda: parse_ts(until, "--until"))
    if until_ns <= since_ns:
        fail("--until must be later than --since")
    return since_ns, until_ns


@app.command()
def detect(
    input_path: Annotated[
        Path | None, typer.Option("--input", help="Event file (JSON Lines, .gz allowed).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Flags file to write (JSON Lines).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Window start in InfluxDB, RFC 3339 with a zone.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Window end in InfluxDB (exclusive), RFC 3339.")
    ] = None,
    stations: Annotated[
        Path | None,
        typer.Option("--stations", help="With --input: station metadata CSV (sites, ratings)."),
    ] = None,
    dask: Annotated[
        bool,
        typer.Option("--dask", help="With --since/--until: (partition x day) tasks on Dask."),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="With --dask: local worker processes (default: one per core)."),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="With --dask: a running Dask scheduler, e.g. tcp://10.0.0.5:8786."),
    ] = None,
) -> None:
    """Run the detectors over an event file (--input/--output) or an InfluxDB window
    (--since/--until, storing profiles, flags and the session catalogue); with --dask, the
    window as a backfill of (station partition x day) tasks on a local Dask cluster or the one
    at --scheduler. Exit 1 when the file held rejected lines."""
    if input_path is not None:
        if since is not None or until is not None:
            fail("use either --input/--output or --since/--until, not both")
        if output is None:
            fail("--input needs --output (the flags file to write)")
        _detect_file(input_path, output, stations)
        return
    if output is not None or stations is not None:
        fail("--output and --stations go with --input (a window reads `stations import`)")
    if dask or workers is not None or scheduler is not None:
        _detect_backfill(*_window(since, until), workers=workers, scheduler=scheduler)
        return
    _detect_window(*_window(since, until))


# glibc's mallopt parameters (malloc.h) and what _reuse_freed_memory sets them to: large
# allocations from the heap up to 32 MB (the most glibc takes: 4 x 1 MiB x sizeof(long)),
# and freed heap memory handed back to the kernel only beyond 512 MB, above the working set
# of a chunk of a file (~12 MB of JSON: its frames, a batch and the detectors' temporaries).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES = 32 << 20
_TRIM_THRESHOLD_BYTES = 512 << 20


def _reuse_freed_memory() -> None:
    """Have glibc's malloc keep the memory a chunk frees for the next chunk, instead of giving
    arrays over 128 kB back to the kernel at once and taking fresh, page-faulted and zeroed
    pages for the next ones: half of ``detect --input``'s page faults (a mixed fleet of 100
    stations x 24 h: 165 k -> 85 k, system time 0.35 -> 0.23 s). A batch command only: the
    process ends when the file is read. Nothing happens without glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (or no C library to ask)
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)


def _freeze_imported() -> None:
    """Leave what the imports made (modules, classes, functions: they live as long as the
    process) out of every garbage collection to come: the collector otherwise walks them again
    at each pass over the older generations, about half of its ~0.1 s in ``detect --input``."""
    import gc

    gc.freeze()


def _detect_file(path: Path, output: Path, stations_csv: Path | None = None) -> None:
    from analytics.pipeline import DetectReport, detect_stream
    from chargewatch.errors import EventError
    from chargewatch.flags import write_flags
    from ingest.files import event_file_problem, open_events
    from ingest.pseudonym import load_pseudonymizer

    settings = guarded(load_settings)
    if (problem := event_file_problem(path)) is not None:
        fail(f"{path}: {problem}")
    # the pseudonyms only match cards within this run and never leave it: write no key file
    pseudonymizer = guarded(lambda: load_pseudonymizer(settings, create_key=False))
    metadata = _stations_file(stations_csv) if stations_csv is not None else None
    report = DetectReport()
    rejections = _RejectedLines(SHOW_REJECTED)
    _reuse_freed_memory()
    _freeze_imported()

    def on_reject(line: int, error: EventError) -> None:
        rejections.show(f"line {line}: {error}")

    try:
        with (
            open_events(path) as stream,
            progress_bar(f"detecting in {path.name}", path.stat().st_size, bytes_=True) as update,
        ):
            flags, report = guarded(
                lambda: detect_stream(
                    stream,
                    decoder=EventDecoder(pseudonymizer),
                    on_reject=on_reject,
                    on_progress=update,
                    report=report,
                    stations=metadata,
                )
            )
        write_flags(output, flags)
    except OSError as exc:
        fail(f"cannot read {path} or write {output}: {exc.strerror}")
    rejections.print_rest()
    stdout.print(report.summary(), markup=False)
    if report.rejected:
        raise typer.Exit(EXIT_REJECTED)


def _stations_file(path: Path) -> StationMetadata:
    """The stations of a CSV for ``detect --input``; refused rows are shown, the rest used."""
    from chargewatch.sites import StationMetadata
    from ingest.stations_import import read_stations

    read = guarded(lambda: read_stations(path))
    for problem in read.problems:
        stderr.print(f"warning: {path.name} {problem}: row left out", markup=False)
    return StationMetadata({s.station_id: s for s in read.stations})


def _detect_window(since_ns: int, until_ns: int) -> None:
    from analytics.window import detect_window
    from chargewatch.influx import InfluxClient
    from chargewatch.site_store import load_metadata
    from chargewatch.state import StateStore

    settings = guarded(load_settings)
    state = guarded(lambda: StateStore(settings.state_db_url))  # the session catalogue
    stations = guarded(lambda: load_metadata(state))
    try:
        with InfluxClient.from_settings(settings) as client:
            _flags, report = guarded(
                lambda: detect_window(
                    client,
                    since_ns,
                    until_ns,
                    catalog=state,
                    judged_at_ns=time.time_ns(),
                    stations=stations,
                )
            )
    finally:
        state.close()
    stdout.print(report.summary(), markup=False)


def _detect_backfill(
    since_ns: int, until_ns: int, *, workers: int | None, scheduler: str | None
) -> None:
    """``detect --since/--until --dask``: ``analytics.backfill`` on a local cluster (``workers``
    processes) or the one at ``scheduler``; a line of progress on stderr after each task."""
    import os

    from analytics.backfill import BackfillProgress, Source, backfill, connect, local_cluster
    from chargewatch.site_store import load_metadata
    from chargewatch.state import StateStore

    if workers is not None and scheduler is not None:
        fail("give --workers (a local cluster) or --scheduler (a running one), not both")
    settings = guarded(load_settings)
    state = guarded(lambda: StateStore(settings.state_db_url))  # the session catalogue
    try:
        stations = guarded(lambda: load_metadata(state))
    finally:
        state.close()
    if scheduler is not None and settings.state_url is None:
        stderr.print(
            "warning: the workers write the session catalogue into this machine's SQLite file "
            f"({settings.state_db_file}); workers elsewhere need CHARGEWATCH_STATE_URL",
            markup=False,
        )

    def show(progress: BackfillProgress) -> None:
        stderr.print(progress.line(), markup=False)

    def run() -> str:
        cluster = connect(scheduler) if scheduler else local_cluster(workers or os.cpu_count() or 1)
        with cluster as client:
            report = backfill(
                client,
                Source.from_settings(settings),
                since_ns,
                until_ns,
                stations=stations,
                on_progress=show,
            )
        return report.summary()

    stdout.print(guarded(run), markup=False)


@app.command()
def flags(
    since: Annotated[str, typer.Option(help="Window start, RFC 3339 with a zone.")],
    until: Annotated[str, typer.Option(help="Window end (exclusive), RFC 3339 with a zone.")],
) -> None:
    """Print the stored flags that start in the window, as JSON Lines."""
    import sys

    from chargewatch.flags import encode_flag, query_flags
    from chargewatch.influx import InfluxClient

    since_ns, until_ns = _window(since, until)
    settings = guarded(load_settings)
    with InfluxClient.from_settings(settings) as client:
        found = guarded(lambda: query_flags(client, since_ns, until_ns))
    out = sys.stdout.buffer
    for flag in found:
        out.write(encode_flag(flag))
    out.flush()


@app.command()
def evaluate(
    labels_path: Annotated[Path, typer.Option("--labels", help="Labels file (JSON Lines).")],
    flags_path: Annotated[
        Path | None, typer.Option("--flags", help="Flags file (JSON Lines) to score.")
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(help="The event file: counts sessions for --flags; the data --model judges."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
    model: Annotated[
        str | None,
        typer.Option(help="Judge the data with this version (or `builtin`) instead of --flags."),
    ] = None,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(help="Judge the data with two models (versions or `builtin`), side by side."),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="With --model or --compare: write an HTML report into this folder."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="With --model/--compare: data from InfluxDB, RFC 3339.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="With --model/--compare: window end (exclusive).")
    ] = None,
    stations: Annotated[
        Path | None, typer.Option("--stations", help="With --events: station metadata CSV.")
    ] = None,
) -> None:
    """Precision, recall and F1 per kind and overall, and false alarms on normal sessions: of a
    flags file (--flags), or of models judging the data (--model V, --compare V1 V2, on
    --events FILE or --since/--until), with an HTML report (--report DIR)."""
    import orjson

    from chargewatch.flags import read_flags
    from models.evaluate import count_sessions, read_labels
    from models.evaluate import evaluate as run_evaluation

    if model is not None or compare is not None:
        from service.cli_export import Data, evaluate_models

        if flags_path is not None or (model is not None and compare is not None):
            fail("give one of --flags, --model and --compare")
        chosen = [model] if model is not None else list(compare or ())
        data = Data(events, since, until, stations)
        evaluate_models(chosen, labels_path, data, report=report, as_json=as_json)
        return
    if flags_path is None:
        fail("give --flags FLAGS.jsonl, or --model V / --compare V1 V2 to judge the data")
    if report is not None or since is not None or until is not None or stations is not None:
        fail("--report, --since, --until and --stations go with --model or --compare")
    for path in (flags_path, labels_path, events):
        if path is not None and not path.is_file():
            fail(f"{path}: no such file")
    try:
        found = guarded(lambda: read_flags(flags_path))
        labels = guarded(lambda: read_labels(labels_path))
        sessions = count_sessions(events) if events is not None else None
    except OSError as exc:
        fail(f"cannot read {exc.filename}: {exc.strerror}")
    result = run_evaluation(found, labels, sessions=sessions)
    if as_json:
        stdout.print(orjson.dumps(result.to_json()).decode(), markup=False)
        return
    print_evaluation(result, f"{flags_path.name} against {labels_path.name}")


def print_evaluation(result: Evaluation, title: str) -> None:
    """The table of ``evaluate`` and its line on normal sessions."""
    from rich.table import Table

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    table = Table(title=title)
    longest = max((len(score.kind) for score in result.kinds), default=7)
    table.add_column("kind", no_wrap=True, min_width=longest)  # piped output must not cut it
    for column in ("flags", "labels", "TP", "found", "precision", "recall", "F1", "on normal"):
        table.add_column(column, justify="right", no_wrap=True)
    for score in [*result.kinds, result.overall]:
        table.add_row(
            score.kind,
            str(score.flags),
            str(score.labels),
            str(score.true_positives),
            str(score.labels_found),
            pct(score.precision),
            pct(score.recall),
            pct(score.f1),
            str(score.false_alarms_on_normal),
            end_section=score is result.kinds[-1] if result.kinds else False,
        )
    # piped, rich assumes 80 columns and would cut the numbers short
    wide = stdout if stdout.is_terminal else Console(highlight=False, width=120)
    wide.print(table)
    rate = (
        f"{result.normal_sessions_flagged} of {result.normal_sessions} normal sessions flagged "
        f"({pct(result.normal_flagged_fraction)}, target <= 0.5 %)"
        if result.normal_sessions is not None
        else f"{result.normal_sessions_flagged} normal sessions flagged "
        "(pass --events for the rate)"
    )
    stdout.print(rate, markup=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Run the service (HTTP API, OCPP endpoint, spool drainer) until SIGTERM/SIGINT."""
    from service.serve import run

    settings = guarded(load_settings)
    scheme = "https" if settings.tls_certfile else "http"
    stderr.print(f"chargewatch serving on {scheme}://{host}:{port}", markup=False)
    guarded(lambda: run(settings, host=host, port=port))


@app.command()
def pseudonym() -> None:
    """Print the pseudonym of each id tag read from standard input (one per line), with the
    service's key: what billing looks users up by. Never creates a key (exit 2 without one)."""
    from ingest.pseudonym import existing_pseudonymizer

    settings = guarded(load_settings)
    pseudonymize = guarded(lambda: existing_pseudonymizer(settings))
    tags = sys.stdin.read().splitlines()
    if not tags:
        fail("no id tag on standard input (one per line)")
    for number, tag in enumerate(tags, start=1):
        if not tag.strip():
            fail(f"line {number} of standard input is blank")  # the tag itself is never shown
    stdout.print("\n".join(pseudonymize(tag) for tag in tags), markup=False)


keys_app = typer.Typer(help="API keys (stored hashed; shown once).")
app.add_typer(keys_app, name="keys")
stations_app = typer.Typer(help="OCPP stations and their passwords (security profiles 1 and 2).")
app.add_typer(stations_app, name="stations")
add_station_commands(app, stations_app)  # stations import, users mark-fleet (cli_stations)
add_verdict_commands(app)  # verdicts export (cli_verdicts)
add_model_commands(app)  # train, models list|show|promote|rollback (cli_models)
add_export_commands(app)  # export (cli_export); evaluate --model/--compare runs there too


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="What the key may do.")] = Role.VIEWER,
) -> None:
    """Print a new API key once; only its hash is stored."""
    from chargewatch.state import StateStore

    settings = guarded(load_settings)
    store = guarded(lambda: StateStore(settings.state_db_url))
    try:
        stdout.print(guarded(lambda: store.create_api_key(role)), markup=False)
    finally:
        store.close()


@keys_app.command("list")
def keys_list() -> None:
    """Every API key: its id, role, when it was created and revoked (never the key itself)."""
    from chargewatch.state import StateStore

    settings = guarded(load_settings)
    store = guarded(lambda: StateStore(settings.state_db_url))
    try:
        keys = guarded(store.api_keys)
    finally:
        store.close()
    stdout.print(f"{'id':<12}  {'role':<8}  {'created':<20}  revoked", markup=False)
    for key in keys:
        revoked = _utc_text(key.revoked_at) if key.revoked_at is not None else "-"
        stdout.print(
            f"{key.key_id:<12}  {key.role.value:<8}  {_utc_text(key.created_at):<20}  {revoked}",
            markup=False,
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `keys list` shows it.")],
) -> None:
    """Revoke an API key: a running service refuses it from its next request on (401)."""
    from chargewatch.state import StateStore

    if key_id.startswith("cw_"):  # a whole key pasted: only its public id is used
        key_id = key_id.removeprefix("cw_").partition("_")[0]
    settings = guarded(load_settings)
    store = guarded(lambda: StateStore(settings.state_db_url))
    try:
        key = guarded(lambda: store.revoke_api_key(key_id, now=datetime.now(UTC)))
    finally:
        store.close()
    if key is None or key.revoked_at is None:
        fail(f"no API key has the id {key_id!r} (chargewatch keys list shows them)")
    stdout.print(
        f"key {key.key_id} ({key.role.value}) revoked at {_utc_text(key.revoked_at)}",
        markup=False,
    )


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@stations_app.command("set-password")
def stations_set_password(
    station_id: Annotated[str, typer.Argument(help="The station's identity (its URL path).")],
) -> None:
    """Set a station's OCPP Basic-auth password, read from standard input (stored hashed)."""
    from chargewatch.state import StateStore
    from ingest.ocppj.admission import station_id_problem

    problem = station_id_problem(station_id)
    if problem is not None:  # a password for an identity the OCPP endpoint refuses is useless
        fail(f"station_id {station_id!r}: {problem}")
    password = sys.stdin.readline().rstrip("\n")
    if len(password) < 16:
        fail("the password must be at least 16 characters (OCPP security profile 1 asks for 16+)")
    settings = guarded(load_settings)
    store = guarded(lambda: StateStore(settings.state_db_url))
    try:
        guarded(lambda: store.set_station_password(station_id, password))
    finally:
        store.close()
    stdout.print(f"password set for {station_id}", markup=False)


def _local_influxd(settings: Settings, data_dir: Path | None) -> LocalInfluxd:
    from chargewatch.influx import LocalInfluxd

    url = urlsplit(settings.influx_url)
    if not influx_is_local(settings):
        raise ConfigError(
            f"CHARGEWATCH_INFLUX_URL points at {url.hostname}; "
            "a local InfluxDB runs on loopback only"
        )
    return LocalInfluxd(data_dir=data_dir or settings.influxdb_dir, port=url.port or 8086)


DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Where InfluxDB keeps its files.")
]


@influxd_app.command("start")
def influxd_start(data_dir: DataDirOption = None) -> None:
    """Install InfluxDB if missing, start it on the URL's port, create the database."""
    from chargewatch.influx import InfluxClient, find_or_install_influxd

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


grafana_app = typer.Typer(help="Grafana provisioning and dashboards, generated from code.")
app.add_typer(grafana_app, name="grafana")


@grafana_app.command("build")
def grafana_build(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the provisioning tree in.")],
) -> None:
    """Write the data sources, the dashboard provider and the dashboards (README, Grafana)."""
    from grafana.build import write

    try:
        written = write(out)
    except OSError as exc:
        fail(f"cannot write under {out}: {exc.strerror}")
    dashboards = sum(1 for path in written if path.suffix == ".json")
    stdout.print(
        f"wrote {dashboards} dashboards and {len(written) - dashboards} provisioning files "
        f"under {out}",
        markup=False,
    )


alertmanager_app = typer.Typer(help="Alertmanager: its generated configuration; a local one.")
app.add_typer(alertmanager_app, name="alertmanager")


@alertmanager_app.command("config")
def alertmanager_config(
    out: Annotated[
        Path | None, typer.Option("--out", help="Write alertmanager.yml here (else print it).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="With --out: run `amtool check-config` on it.")
    ] = False,
) -> None:
    """The alertmanager.yml generated from the taxonomy and CHARGEWATCH_ALERT_WEBHOOK_*."""
    from alerts.config import Webhook, config_text, write_config
    from alerts.server import check_config

    text = guarded(lambda: config_text(Webhook.from_settings(load_settings())))
    if out is None:
        stdout.out(text, end="")
        return
    try:
        write_config(out, text)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    stdout.print(f"wrote {out}", markup=False)
    if check:
        stdout.print(guarded(lambda: check_config(out)), markup=False)


def _local_alertmanager(settings: Settings) -> LocalAlertmanager:
    """The local Alertmanager under the data directory, on the port of the first
    CHARGEWATCH_ALERTMANAGER_URLS when that is on loopback (9093 otherwise)."""
    from alerts.config import Webhook, config_text
    from alerts.server import LocalAlertmanager

    port = 9093
    for url in settings.alertmanager_urls[:1]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host == "localhost" or host.startswith("127."):
            port = parts.port or port
    config = config_text(Webhook.from_settings(settings))
    return LocalAlertmanager(data_dir=settings.alertmanager_dir, port=port, config=config)


@alertmanager_app.command("start")
def alertmanager_start() -> None:
    """Install Alertmanager if missing (Debian's package), start it on 127.0.0.1 with the
    generated configuration, its data under the data directory."""

    def run() -> str:
        server = _local_alertmanager(load_settings())
        server.start()
        return server.url

    stdout.print(f"Alertmanager running at {guarded(run)}", markup=False)


@alertmanager_app.command("stop")
def alertmanager_stop() -> None:
    """Stop the local Alertmanager started by ``alertmanager start`` (its storage is kept)."""
    guarded(lambda: _local_alertmanager(load_settings()).stop())
    stdout.print("Alertmanager stopped", markup=False)


@alertmanager_app.command("status")
def alertmanager_status() -> None:
    """Say whether the local Alertmanager is running (exit 1 when it is not)."""
    server = guarded(lambda: _local_alertmanager(load_settings()))
    if server.pid is not None:
        stdout.print(f"Alertmanager running at {server.url}", markup=False)
    else:
        stdout.print("Alertmanager not running", markup=False)
        raise typer.Exit(1)


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app()


if __name__ == "__main__":
    main()
