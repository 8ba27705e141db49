"""``chargewatch export``: Parquet files that polars reads back in one line, each row what the
judged history holds; verdicts from the state database; novelty only with a version that has
one; and the command over a window of a real InfluxDB."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest

from analytics.export import FILES, NOVELTY_COLUMNS, read_verdict_rows, write_export
from analytics.judged import BUILTIN, Judged, judge, load_model, started_between
from analytics.novelty import FEATURE_NAMES, scorable
from analytics.training import History, history_from_file, train
from chargewatch.events import EventDecoder
from chargewatch.flags import Flag, query_flags
from chargewatch.influx import InfluxClient
from chargewatch.state import StateStore
from chargewatch.verdicts import Verdict, flag_id, record_verdict
from ingest.pseudonym import Pseudonymizer
from models.evaluate import read_labels
from models.registry import Registry
from models.train import register_candidate
from simulator import SimulationConfig, simulate
from tests.conftest import JudgedFleet

START = datetime(2026, 11, 23, tzinfo=UTC)
POSTED = datetime(2026, 11, 24, 9, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Fleet:
    events: Path
    labels: Path
    history: History


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    folder = tmp_path_factory.mktemp("export")
    events, labels = folder / "events.jsonl", folder / "labels.jsonl"
    config = SimulationConfig(stations=10, hours=12, seed=7, start=START, anomaly_rate=0.3)
    simulate(config, events, labels)
    decoder = EventDecoder(Pseudonymizer(b"export-test-key" * 3))
    return Fleet(events, labels, history_from_file(events, decoder, labels_path=labels))


def builtin(fleet: Fleet) -> Judged:
    history = fleet.history
    return judge(history.batch, model=load_model(BUILTIN, None), now_ns=history.now_ns)


def verdict(store: StateStore, flag: Flag, kind: Verdict, minutes: int) -> None:
    right = "meter_stuck" if kind is Verdict.WRONG_KIND else None
    at = POSTED.replace(minute=minutes)
    record_verdict(
        store, flag, kind, right_kind=right, comment="seen", who="Ana", key_id=None, at=at
    )


def test_every_file_reads_back_as_the_judged_history(fleet: Fleet, tmp_path: Path) -> None:
    judged = builtin(fleet)
    assert judged.flags, "the fleet has anomalies"
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert read_verdict_rows(store, 0, 2**62) == []  # no verdict ever: no table yet
        first, second = judged.flags[0], judged.flags[-1]
        verdict(store, first, Verdict.CONFIRMED, 0)
        verdict(store, first, Verdict.FALSE_ALARM, 5)  # changed mind: the latest counts
        verdict(store, second, Verdict.WRONG_KIND, 10)
        rows = read_verdict_rows(store, int(judged.batch.start_ns.min()), judged.now_ns)
    finally:
        store.close()
    report = write_export(tmp_path / "out", judged, rows)
    frames = {name: pl.read_parquet(tmp_path / "out" / f"{name}.parquet") for name in FILES}
    n = judged.batch.n_sessions
    assert report.rows == {name: frame.height for name, frame in frames.items()}
    assert [frames[name].height for name in ("profiles", "scores", "features")] == [n, n, n]

    scores = frames["scores"]
    assert scores["session_id"].to_list() == judged.batch.session_id.tolist()
    for result in judged.results:
        column = scores[result.kind].fill_null(np.nan).to_numpy()
        assert np.array_equal(column, result.score, equal_nan=True), result.kind
    assert scores["start"].dtype == pl.Datetime("ns", "UTC")
    assert scores["start"].dt.epoch("ns").to_list() == judged.batch.start_ns.tolist()
    assert set(scores["model"].to_list()) == {BUILTIN}
    for name in NOVELTY_COLUMNS:  # the built-in detectors have no novelty forest
        assert scores[name].null_count() == n
    flagged = scores.filter(pl.col("flagged_kinds").list.len() > 0)
    assert flagged.height == len({(f.session_id, f.station_id, f.start_ns) for f in judged.flags})

    flags = frames["flags"]
    assert flags["flag_id"].to_list() == [flag_id(f) for f in judged.flags]
    assert flags["kind"].to_list() == [f.kind for f in judged.flags]
    assert flags["reason"].to_list() == [f.reason for f in judged.flags]

    verdicts = frames["verdicts"]
    assert verdicts["verdict"].to_list() == ["confirmed", "false_alarm", "wrong_kind"]
    assert verdicts["latest"].to_list() == [False, True, True]
    assert verdicts["right_kind"].to_list() == [None, None, "meter_stuck"]
    assert set(verdicts["flag_id"].to_list()) <= set(flags["flag_id"].to_list())
    assert verdicts["posted_at"][1] == POSTED.replace(minute=5)

    profiles = frames["profiles"]
    open_rows = int(np.count_nonzero(judged.batch.stop_ns == np.iinfo(np.int64).min))
    assert profiles["stop"].null_count() == open_rows
    features = frames["features"]
    assert features.columns[5:] == list(FEATURE_NAMES)
    assert features["scorable"].to_list() == scorable(judged.batch).tolist()
    # no pseudonym leaves the service
    assert all("pseudonym" not in c for frame in frames.values() for c in frame.columns)


def test_a_version_with_a_novelty_forest_fills_its_column(fleet: Fleet, tmp_path: Path) -> None:
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        registry = Registry(tmp_path / "models", state.engine)
        candidate = train(fleet.history, labels=read_labels(fleet.labels))
        info = register_candidate(registry, candidate, created_at=datetime(2026, 12, 3, tzinfo=UTC))
        model = load_model(info.version, registry)
    finally:
        state.close()
    assert model.novelty is not None
    history = fleet.history
    window = (int(np.median(history.batch.start_ns)), history.now_ns)
    rows = started_between(history.batch, *window)
    judged = judge(history.batch, model=model, now_ns=history.now_ns, rows=rows)
    assert 0 < judged.batch.n_sessions < history.batch.n_sessions
    assert np.all(judged.batch.start_ns >= window[0])
    write_export(tmp_path / "out", judged, [])
    scores = pl.read_parquet(tmp_path / "out" / "scores.parquet")
    novelty = scores["novelty"]
    scored = scorable(judged.batch)
    assert novelty.null_count() == int(np.count_nonzero(~scored))
    assert novelty.drop_nulls().is_between(0.0, 1.0).all()
    assert set(scores["model"].to_list()) == {info.version}


def test_export_command_over_a_window_of_influxdb(
    judged_fleet: JudgedFleet, tmp_path: Path
) -> None:
    settings = judged_fleet.settings
    # verdicts in a state database of this test's own: the fleet's is shared, read only
    data_dir = tmp_path / "var"
    with InfluxClient(url=settings.influx_url, database=settings.influx_database) as client:
        stored = query_flags(client, judged_fleet.since_ns, judged_fleet.until_ns)
    assert stored
    store = StateStore(f"sqlite:///{data_dir / 'state.db'}")
    try:
        verdict(store, stored[0], Verdict.CONFIRMED, 0)
    finally:
        store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEWATCH_")}
    env |= {
        "CHARGEWATCH_DATA_DIR": str(data_dir),
        "CHARGEWATCH_INFLUX_URL": settings.influx_url,
        "CHARGEWATCH_INFLUX_DATABASE": settings.influx_database,
    }
    since, until = (
        datetime.fromtimestamp(ns / 1e9, UTC).isoformat()
        for ns in (judged_fleet.since_ns, judged_fleet.until_ns)
    )
    out = tmp_path / "out"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "chargewatch", *args]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    done = cli("export", "--since", since, "--until", until, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "scored by builtin" in done.stdout  # no version promoted
    profiles = pl.read_parquet(out / "profiles.parquet")
    starts = profiles["start"].dt.epoch("ns")
    assert (
        profiles.height
        and starts.is_between(judged_fleet.since_ns, judged_fleet.until_ns, closed="left").all()
    )
    assert judged_fleet.session_id in profiles["session_id"].to_list()
    verdicts = pl.read_parquet(out / "verdicts.parquet")
    assert verdicts["flag_id"].to_list() == [flag_id(stored[0])]
    flags = pl.read_parquet(out / "flags.parquet")
    assert set(flags["session_id"].drop_nulls().to_list()) <= set(profiles["session_id"].to_list())
    # the window judged again for evaluation, against the simulator's labels
    labels = settings.data_dir.parent / "labels.jsonl"
    evaluated = cli(
        *("evaluate", "--labels", str(labels), "--model", "builtin", "--json"),
        *("--since", since, "--until", until),
    )
    assert evaluated.returncode == 0, evaluated.stderr
    result = orjson.loads(evaluated.stdout)
    assert result["model"] == "builtin"
    # the same window and detectors as export: the same flags, most labels found
    assert result["overall"]["flags"] == flags.height
    assert result["overall"]["labels_found"] > result["overall"]["labels"] / 2
    refused = cli("export", "--since", since, "--out", str(out), "--input", str(out / "x"))
    assert refused.returncode == 2
    assert "use either --input or --since/--until, not both" in refused.stderr
