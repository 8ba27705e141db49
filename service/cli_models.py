"""Training and the model registry on the command line.

- ``chargewatch train --input EVENTS.jsonl [--labels LABELS.jsonl] [--stations STATIONS.csv]``
  or ``chargewatch train --since TS --until TS [--labels LABELS.jsonl]`` (history from
  InfluxDB, station metadata from the state database): fits the detectors that learn,
  calibrates each kind's score threshold to ``--target-rate`` false alarms on history judged
  normal (``--negatives``: the pairs operators rejected, ``verdicts export --negatives``), fits
  the novelty model, measures the held-out stations, and registers a new version
  (``analytics.training``, ``models.train``). Prints the version, its fingerprint and the kinds
  whose threshold calibration raised.
- ``chargewatch models list | show V | promote V | rollback``: the registry
  (``models.registry``). A running ``serve`` picks up a promotion or a rollback at its next
  detection run, without a restart.

``service.cli`` registers these commands (``add_model_commands``); the helpers it shares
(``fail``, ``guarded``, ``stdout``) are imported when a command runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from analytics.training import History
    from chargewatch.settings import Settings
    from chargewatch.sites import StationMetadata
    from chargewatch.state import StateStore
    from models.registry import Registry, VersionInfo
    from models.train import Candidate

models_app = typer.Typer(help="The model registry: trained versions, which one scores.")


def add_model_commands(app: typer.Typer) -> None:
    """Register ``train`` and the ``models`` group on ``app``."""
    app.command("train")(train)
    app.add_typer(models_app, name="models")


def _registry(settings: Settings) -> tuple[Registry, StateStore]:
    from chargewatch.state import StateStore
    from models.registry import Registry
    from service.cli import guarded

    state = guarded(lambda: StateStore(settings.state_db_url))
    return Registry(settings.models_dir, state.engine), state


def train(
    input_path: Annotated[
        Path | None, typer.Option("--input", help="Event file (JSON Lines) to learn from.")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Labels (JSON Lines): measure the held-out stations."),
    ] = None,
    stations: Annotated[
        Path | None, typer.Option("--stations", help="With --input: station metadata CSV.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="History start in InfluxDB, RFC 3339 with a zone.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="History end in InfluxDB (exclusive), RFC 3339.")
    ] = None,
    negatives: Annotated[
        Path | None,
        typer.Option(
            "--negatives",
            help="(session, kind) pairs judged normal (JSON Lines, `verdicts export "
            "--negatives`): the false alarms thresholds are calibrated against.",
        ),
    ] = None,
    target_rate: Annotated[
        float,
        typer.Option(
            "--target-rate",
            min=0.0,
            max=0.5,
            help="Per kind, the share of sessions judged normal that may stay flagged "
            "(0.005: half the detectors' 1 % target for all kinds together).",
        ),
    ] = 0.005,  # analytics.calibration.DEFAULT_TARGET_RATE (a test holds them equal)
) -> None:
    """Fit the learned parts of the detectors on history, calibrate each kind's threshold and
    fit the novelty model, and register a new model version (not promoted: `chargewatch models
    promote V` puts it in service)."""
    from chargewatch.settings import load_settings
    from service.cli import fail, guarded, stdout

    for path in (input_path, labels, stations, negatives):
        if path is not None and not path.is_file():
            fail(f"{path}: no such file")
    if input_path is None and since is None and until is None:
        fail("give --input EVENTS.jsonl, or --since and --until (history in InfluxDB)")
    if input_path is not None and (since is not None or until is not None):
        fail("use either --input or --since/--until, not both")
    if input_path is None and stations is not None:
        fail("--stations goes with --input (a window reads `stations import`)")
    settings = guarded(load_settings)
    registry, state = _registry(settings)
    try:
        history, metadata = _history(
            input_path, labels, negatives, stations, since, until, settings, state
        )
        candidate, info = _fit_and_register(
            history, labels, negatives, metadata, registry, target_rate
        )
    except OSError as exc:
        fail(f"cannot read {exc.filename}: {exc.strerror}")
    finally:
        state.close()
    rows = candidate.training
    stdout.print(
        f"registered {info.version}: {rows['rows']} rows ({rows['train']['rows']} trained on, "
        f"{rows['held_out']['rows']} held out), fingerprint {candidate.fingerprint}",
        markup=False,
    )
    kinds = candidate.calibration.get("kinds", {})
    raised = [
        f"{kind} {entry['threshold']:.3f}"
        for kind, entry in kinds.items()
        if entry["threshold"] > entry["floor"]
    ]
    stdout.print(
        f"thresholds at target {target_rate:g}: "
        + (", ".join(raised) if raised else "every kind at its rule's own"),
        markup=False,
    )


def _history(
    input_path: Path | None,
    labels: Path | None,
    negatives: Path | None,
    stations: Path | None,
    since: str | None,
    until: str | None,
    settings: Settings,
    state: StateStore,
) -> tuple[History, StationMetadata | None]:
    """The history to learn from (the file, or the InfluxDB window) and the station metadata
    that goes with it (the CSV, or ``stations import``'s)."""
    from analytics.training import TRAIN_MAX_CELLS, history_from_file, history_from_influx
    from service.cli import _stations_file, _window, guarded

    if input_path is not None:
        from chargewatch.events import EventDecoder
        from ingest.pseudonym import load_pseudonymizer

        # pseudonyms only matter within the run: no key file is written
        decoder = EventDecoder(guarded(lambda: load_pseudonymizer(settings, create_key=False)))
        metadata = _stations_file(stations) if stations is not None else None
        history = guarded(
            lambda: history_from_file(
                input_path,
                decoder,
                labels_path=labels,
                stations_path=stations,
                negatives_path=negatives,
                max_cells=TRAIN_MAX_CELLS,
            )
        )
        return history, metadata
    from chargewatch.influx import InfluxClient
    from chargewatch.site_store import load_metadata

    since_ns, until_ns = _window(since, until)
    metadata = guarded(lambda: load_metadata(state))
    with InfluxClient.from_settings(settings) as client:
        history = guarded(
            lambda: history_from_influx(
                client,
                since_ns,
                until_ns,
                labels_path=labels,
                negatives_path=negatives,
                max_cells=TRAIN_MAX_CELLS,
            )
        )
    return history, metadata


def _fit_and_register(
    history: History,
    labels: Path | None,
    negatives: Path | None,
    metadata: StationMetadata | None,
    registry: Registry,
    target_rate: float,
) -> tuple[Candidate, VersionInfo]:
    from analytics.training import train as fit_candidate
    from models.evaluate import read_labels
    from models.train import register_candidate
    from service.cli import guarded

    known = guarded(lambda: read_labels(labels)) if labels is not None else None
    normal = guarded(lambda: read_labels(negatives)) if negatives is not None else None
    candidate = guarded(
        lambda: fit_candidate(
            history, labels=known, negatives=normal, stations=metadata, target_rate=target_rate
        )
    )
    info = guarded(lambda: register_candidate(registry, candidate, created_at=datetime.now(UTC)))
    return candidate, info


@models_app.command("list")
def models_list() -> None:
    """Every registered version, oldest first, and which one is in service."""
    from chargewatch.settings import load_settings
    from service.cli import guarded, stdout

    settings = guarded(load_settings)
    registry, state = _registry(settings)
    try:
        versions = guarded(registry.versions)
    finally:
        state.close()
    if not versions:
        stdout.print("no model versions (the built-in detectors score)", markup=False)
        return
    for v in versions:
        promoted = "-" if v.promoted_at is None else _utc_text(v.promoted_at)
        stdout.print(
            f"{v.version}\t{_utc_text(v.created_at)}\t{v.status}\tpromoted {promoted}\t"
            f"manifest {v.manifest_sha256[:12]}",
            markup=False,
        )


@models_app.command("show")
def models_show(version: Annotated[str, typer.Argument(help="The version to show.")]) -> None:
    """A version's manifest (JSON), after checking its files against it. Exit 2 when a file
    is refused (the reason is printed)."""
    import orjson

    from chargewatch.settings import load_settings
    from service.cli import guarded, stdout

    settings = guarded(load_settings)
    registry, state = _registry(settings)
    try:
        info = guarded(lambda: registry.info(version))
        manifest = guarded(lambda: registry.manifest(version))
        guarded(lambda: registry.load(version))  # every artifact checked
    finally:
        state.close()
    shown = {"status": info.status, "manifest_sha256": info.manifest_sha256, **manifest}
    stdout.print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode(), markup=False)


@models_app.command("promote")
def models_promote(version: Annotated[str, typer.Argument(help="The version to serve.")]) -> None:
    """Put a version in service (its files checked first); `serve` uses it from its next run."""
    from chargewatch.settings import load_settings
    from service.cli import guarded, stdout

    settings = guarded(load_settings)
    registry, state = _registry(settings)
    try:
        guarded(lambda: registry.promote(version, now=datetime.now(UTC)))
    finally:
        state.close()
    stdout.print(f"promoted {version}", markup=False)


@models_app.command("rollback")
def models_rollback() -> None:
    """Withdraw the version in service: the one promoted before it serves again (or the
    built-in detectors)."""
    from chargewatch.settings import load_settings
    from service.cli import guarded, stdout

    settings = guarded(load_settings)
    registry, state = _registry(settings)
    try:
        back = guarded(lambda: registry.rollback(now=datetime.now(UTC)))
    finally:
        state.close()
    stdout.print(f"rolled back: {back or 'built-in'} is in service", markup=False)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
