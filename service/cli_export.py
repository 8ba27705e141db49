"""Exports for analysis, and evaluation of models, on the command line.

- ``chargewatch export --since TS --until TS --out DIR`` (or ``--input EVENTS.jsonl``): the
  window's sessions read from InfluxDB as training reads them, judged by the version in service
  (or ``--model V``, ``builtin``), written as Parquet (``analytics.export``) with the verdicts
  operators posted on the window's flags (the state database).
- ``chargewatch evaluate --labels L --model V`` or ``--compare V1 V2``, on ``--events FILE`` or
  ``--since TS --until TS``: the same labeled data judged by one model or two
  (``analytics.judged``), precision, recall and F1 per kind, side by side with the difference
  for two; ``--report DIR`` writes the HTML report (``analytics.report``). ``service.cli``'s
  ``evaluate`` hands these options here; with ``--flags`` it scores a flags file as before.

``service.cli`` registers ``export`` (``add_export_commands``); the helpers it shares
(``fail``, ``guarded``, ``stdout``) are imported when a command runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from analytics.judged import Judged
    from analytics.training import History
    from chargewatch.settings import Settings
    from chargewatch.sites import StationMetadata
    from chargewatch.state import StateStore
    from models.evaluate import Evaluation, Label
    from models.registry import Registry

__all__ = ["Data", "add_export_commands", "evaluate_models", "export"]


def add_export_commands(app: typer.Typer) -> None:
    """Register ``export`` on ``app``."""
    app.command("export")(export)


@dataclass(frozen=True, slots=True)
class Data:
    """Where the sessions come from: an event file, or a window of InfluxDB."""

    input_path: Path | None
    since: str | None
    until: str | None
    stations: Path | None  # with input_path: station metadata CSV

    def check(self, what: str) -> None:
        from service.cli import fail

        if self.input_path is None and self.since is None and self.until is None:
            fail(f"{what}: give {self._file_option(what)} FILE, or --since and --until")
        if self.input_path is not None and (self.since is not None or self.until is not None):
            fail(f"use either {self._file_option(what)} or --since/--until, not both")
        if self.input_path is None and self.stations is not None:
            option = self._file_option(what)
            fail(f"--stations goes with {option} (a window reads `stations import`)")
        for path in (self.input_path, self.stations):
            if path is not None and not path.is_file():
                fail(f"{path}: no such file")

    @staticmethod
    def _file_option(what: str) -> str:
        return "--events" if what == "evaluate" else "--input"

    def describe(self) -> str:
        if self.input_path is not None:
            return str(self.input_path)
        return f"InfluxDB {self.since} to {self.until}"


def _open_state(settings: Settings) -> tuple[StateStore, Registry]:
    from chargewatch.state import StateStore
    from models.registry import Registry
    from service.cli import guarded

    state = guarded(lambda: StateStore(settings.state_db_url))
    return state, Registry(settings.models_dir, state.engine)


def _history(
    data: Data, settings: Settings, state: StateStore
) -> tuple[History, StationMetadata | None, tuple[int, int] | None]:
    """The sessions, their station metadata, and the window (None for a file)."""
    from analytics.training import history_from_file, history_from_influx
    from service.cli import _stations_file, _window, guarded

    if data.input_path is not None:
        from chargewatch.events import EventDecoder
        from ingest.pseudonym import load_pseudonymizer

        path = data.input_path
        # pseudonyms only need to agree within the run: no key file is written
        decoder = EventDecoder(guarded(lambda: load_pseudonymizer(settings, create_key=False)))
        metadata = _stations_file(data.stations) if data.stations is not None else None
        history = guarded(lambda: history_from_file(path, decoder, stations_path=data.stations))
        return history, metadata, None
    from chargewatch.influx import InfluxClient
    from chargewatch.site_store import load_metadata

    since_ns, until_ns = _window(data.since, data.until)
    metadata = guarded(lambda: load_metadata(state))
    with InfluxClient.from_settings(settings) as client:
        history = guarded(lambda: history_from_influx(client, since_ns, until_ns))
    return history, metadata, (since_ns, until_ns)


def _judge(
    model: str,
    history: History,
    metadata: StationMetadata | None,
    window: tuple[int, int] | None,
    registry: Registry,
) -> Judged:
    from analytics.judged import judge, load_model, started_between
    from service.cli import guarded

    chosen = guarded(lambda: load_model(model, registry))
    rows = None if window is None else started_between(history.batch, *window)
    return guarded(
        lambda: judge(
            history.batch,
            model=chosen,
            now_ns=history.now_ns,
            stations=metadata,
            rows=rows,
        )
    )


def export(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the Parquet files in.")],
    input_path: Annotated[
        Path | None, typer.Option("--input", help="Event file (JSON Lines) instead of InfluxDB.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Window start in InfluxDB, RFC 3339 with a zone.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Window end in InfluxDB (exclusive), RFC 3339.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Score with this version, or `builtin` (default: the one in service)."),
    ] = None,
    stations: Annotated[
        Path | None, typer.Option("--stations", help="With --input: station metadata CSV.")
    ] = None,
) -> None:
    """Write the sessions that started in the window (every session of --input) as Parquet:
    profiles, per-kind scores, flags, verdicts and features, one file each (see the README)."""
    from analytics.export import read_verdict_rows, write_export
    from analytics.judged import BUILTIN
    from chargewatch.settings import load_settings
    from service.cli import fail, guarded, stdout

    data = Data(input_path, since, until, stations)
    data.check("export")
    settings = guarded(load_settings)
    state, registry = _open_state(settings)
    try:
        chosen = model if model is not None else guarded(registry.promoted) or BUILTIN
        history, metadata, window = _history(data, settings, state)
        judged = _judge(chosen, history, metadata, window, registry)
        span = window if window is not None else _span(judged)
        verdicts = guarded(lambda: read_verdict_rows(state, *span))
        report = write_export(out, judged, verdicts)
    except OSError as exc:
        fail(f"cannot read or write {exc.filename}: {exc.strerror}")
    finally:
        state.close()
    stdout.print(f"{report.summary()}, scored by {chosen}", markup=False)


def _span(judged: Judged) -> tuple[int, int]:
    """A file's time span for its verdicts: its first row's start to the end of its data."""
    starts = judged.batch.start_ns
    first = int(starts.min()) if starts.size else judged.now_ns
    return first, judged.now_ns + 1


# -- evaluate --model / --compare -----------------------------------------------------------------


def evaluate_models(
    models: list[str],
    labels_path: Path,
    data: Data,
    *,
    report: Path | None,
    as_json: bool,
) -> None:
    """Judge ``data`` with each of ``models`` (one or two), measure against the labels, print
    (a table, or JSON) and write the report when asked."""
    from service.cli import fail, guarded, print_evaluation, stdout

    data.check("evaluate")  # before the libraries below are loaded: a usage error is quick
    if not labels_path.is_file():
        fail(f"{labels_path}: no such file")
    if len(set(models)) != len(models):
        fail(f"--compare needs two different models, not {models[0]} twice")
    import orjson

    from analytics.report import evaluate_judged, write_report
    from chargewatch.settings import load_settings
    from models.compare import compare
    from models.evaluate import read_labels

    settings = guarded(load_settings)
    state, registry = _open_state(settings)
    try:
        labels: list[Label] = guarded(lambda: read_labels(labels_path))
        history, metadata, window = _history(data, settings, state)
        judged = [_judge(m, history, metadata, window, registry) for m in models]
    except OSError as exc:
        fail(f"cannot read {exc.filename}: {exc.strerror}")
    finally:
        state.close()
    measured = [evaluate_judged(j, labels) for j in judged]
    results: list[Evaluation] = [m.evaluation for m in measured]
    if as_json:
        if len(results) == 1:
            doc = {"model": models[0], **results[0].to_json()}
        else:
            doc = {
                "models": models,
                "evaluations": {m: r.to_json() for m, r in zip(models, results, strict=True)},
                "difference": compare(results[0], results[1]).to_json(),
            }
        stdout.print(orjson.dumps(doc).decode(), markup=False)
    elif len(results) == 1:
        print_evaluation(results[0], f"{models[0]} on {data.describe()} against {labels_path.name}")
    else:
        _print_comparison(models, results, f"{data.describe()} against {labels_path.name}")
    if report is not None:
        try:
            summary = write_report(
                report,
                measured,
                labels,
                source=data.describe(),
                labels_source=str(labels_path),
            )
        except OSError as exc:
            fail(f"cannot write the report under {report}: {exc.strerror}")
        left = (
            f", {summary.pictures_left_out} profile pictures left out"
            if summary.pictures_left_out
            else ""
        )
        target = typer.get_text_stream("stderr")
        target.write(f"report: {summary.index} ({summary.images} images{left})\n")


def _print_comparison(models: list[str], results: list[Evaluation], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from models.compare import compare
    from service.cli import stdout

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def points(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:+.1f} pp"

    first, second = models
    difference = compare(results[0], results[1])
    table = Table(title=f"{first} and {second} on {title}")
    longest = max((len(d.kind) for d in difference.kinds), default=7)
    table.add_column("kind", no_wrap=True, min_width=longest)
    table.add_column("labels", justify="right", no_wrap=True)
    for name in ("P", "R", "F1"):
        for model in (first, second):
            table.add_column(f"{name} {model}", justify="right", no_wrap=True)
        table.add_column(f"Δ {name}", justify="right", no_wrap=True)
    for row in [*difference.kinds, difference.overall]:
        cells = [row.kind, str(row.labels)]
        for a, b, d in (
            (row.precision, row.precision_other, row.precision_change),
            (row.recall, row.recall_other, row.recall_change),
            (row.f1, row.f1_other, row.f1_change),
        ):
            cells += [pct(a), pct(b), points(d)]
        table.add_row(*cells, end_section=row is difference.kinds[-1])
    wide = stdout if stdout.is_terminal else Console(highlight=False, width=200)
    wide.print(table)
    for model, result in zip(models, results, strict=True):
        stdout.print(
            f"{model}: {result.normal_sessions_flagged} of {result.normal_sessions} normal "
            f"sessions flagged ({pct(result.normal_flagged_fraction)}, target <= 0.5 %)",
            markup=False,
        )
