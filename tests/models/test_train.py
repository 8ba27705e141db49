"""Training on a small simulated fleet: what is learned, the fingerprint, and a version's
detectors scoring as the fitted ones do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from analytics.detectors import EarlyTaper, default_detectors, detect, fit_detectors
from analytics.detectors.base import BaseDetector
from analytics.detectors.ratings import StationRatings
from analytics.learned import (
    DETECTORS_FILE,
    NOVELTY_FILE,
    RATINGS_FILE,
    TAPER_FILE,
    THRESHOLDS_FILE,
    LearnedState,
    ModelDetector,
    learned_state,
    merge_ratings,
)
from analytics.training import History, held_out, history_from_file, history_from_influx, train
from chargewatch.events import EventDecoder
from chargewatch.influx import InfluxClient
from chargewatch.state import StateStore
from ingest.pseudonym import Pseudonymizer
from models.evaluate import read_labels
from models.registry import Registry
from models.train import register_candidate
from simulator import SimulationConfig, simulate
from tests.conftest import JudgedFleet

START = datetime(2026, 11, 23, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Fleet:
    events: Path
    labels: Path


def make_fleet(folder: Path, seed: int = 7) -> Fleet:
    folder.mkdir(parents=True, exist_ok=True)
    events, labels = folder / "events.jsonl", folder / "labels.jsonl"
    config = SimulationConfig(stations=10, hours=12, seed=seed, start=START, anomaly_rate=0.3)
    simulate(config, events, labels)
    return Fleet(events, labels)


def history(fleet: Fleet) -> History:
    decoder = EventDecoder(Pseudonymizer(b"training-test-key" * 2))
    return history_from_file(fleet.events, decoder, labels_path=fleet.labels)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return make_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield Registry(tmp_path / "models", state.engine)
    state.close()


def test_training_twice_gives_the_same_fingerprint_and_artifacts(
    fleet: Fleet, registry: Registry
) -> None:
    labels = read_labels(fleet.labels)
    first = register_candidate(
        registry, train(history(fleet), labels=labels), created_at=datetime(2026, 12, 1, tzinfo=UTC)
    )
    second = register_candidate(
        registry, train(history(fleet), labels=labels), created_at=datetime(2026, 12, 2, tzinfo=UTC)
    )
    one, two = registry.manifest(first.version), registry.manifest(second.version)
    assert one["fingerprint"] == two["fingerprint"]
    assert one["artifacts"] == two["artifacts"]
    files = {TAPER_FILE, RATINGS_FILE, DETECTORS_FILE, THRESHOLDS_FILE, NOVELTY_FILE}
    assert set(one["artifacts"]) == files
    assert one["version"] != two["version"]


def test_other_data_gives_another_fingerprint(fleet: Fleet, tmp_path: Path) -> None:
    other = make_fleet(tmp_path / "other", seed=8)
    assert history(fleet).fingerprint != history(other).fingerprint


def test_manifest_says_what_it_was_trained_on(fleet: Fleet, registry: Registry) -> None:
    candidate = train(history(fleet), labels=read_labels(fleet.labels))
    info = register_candidate(registry, candidate, created_at=datetime.now(UTC))
    manifest = registry.manifest(info.version)
    training = manifest["training"]
    assert training["input"] == str(fleet.events)
    assert training["train"]["rows"] + training["held_out"]["rows"] == training["rows"]
    assert training["held_out"]["stations"], "10 stations leave some held out"
    assert {"numpy", "python", "chargewatch"} <= set(manifest["libraries"])
    assert manifest["features"]
    for entry in manifest["artifacts"].values():
        assert entry["holds"]
    # the held-out stations measured with the candidate and with the built-in detectors
    for side in ("model", "built_in"):
        assert {"kinds", "overall", "normal_flagged_fraction"} <= set(manifest["metrics"][side])


def test_the_held_out_split_is_by_station_and_stable() -> None:
    ids = np.array([f"CW-{i:04d}" for i in range(200)], dtype=object)
    first, again = held_out(ids), held_out(ids[::-1])[::-1]
    assert np.array_equal(first, again)
    assert 0.1 < first.mean() < 0.3  # about one in five


def test_a_version_scores_as_the_detectors_it_was_made_from(
    fleet: Fleet, registry: Registry
) -> None:
    batch = history(fleet).batch
    now_ns = int(batch.t_ns.max())
    fitted = fit_detectors(batch, default_detectors())
    state = learned_state([d for d in fitted if isinstance(d, BaseDetector)])
    files = state.arrays()
    assert files[TAPER_FILE]["band"].shape == files[TAPER_FILE]["band_count"].shape
    again = LearnedState(
        params=state.params,
        band=files[TAPER_FILE]["band"],
        band_count=files[TAPER_FILE]["band_count"],
        band_learned=files[TAPER_FILE]["band_learned"],
        ratings=state.ratings,
    )
    model = fit_detectors(batch, again.detectors())
    expected = detect(batch, now_ns=now_ns, detectors=fitted)
    got = detect(batch, now_ns=now_ns, detectors=model)
    for want, have in zip(expected, got, strict=True):
        assert want.kind == have.kind
        assert np.array_equal(want.flagged, have.flagged)
        np.testing.assert_array_equal(want.score, have.score)


def test_the_trained_band_replaces_what_a_window_would_learn(fleet: Fleet) -> None:
    batch = history(fleet).batch
    fitted = fit_detectors(batch, default_detectors())
    state = learned_state([d for d in fitted if isinstance(d, BaseDetector)])
    lowered = LearnedState(
        params=state.params,
        band=state.band * 0.5,
        band_count=state.band_count,
        band_learned=np.ones_like(state.band_learned),
        ratings=state.ratings,
    )
    taper = next(
        d for d in fit_detectors(batch.rows(0, 3), lowered.detectors()) if d.kind == "early_taper"
    )
    assert isinstance(taper, ModelDetector)
    inner = taper._inner  # the detector a window's fit ends with
    assert isinstance(inner, EarlyTaper)
    np.testing.assert_array_equal(inner.band_, state.band * 0.5)


def test_training_from_influxdb_twice_gives_the_same_fingerprint(judged_fleet: JudgedFleet) -> None:
    settings = judged_fleet.settings
    with InfluxClient(url=settings.influx_url, database=settings.influx_database) as client:
        first = history_from_influx(client, judged_fleet.since_ns, judged_fleet.until_ns)
        again = history_from_influx(client, judged_fleet.since_ns, judged_fleet.until_ns)
        shorter = history_from_influx(
            client, judged_fleet.since_ns, judged_fleet.until_ns - 3600 * 1_000_000_000
        )
    assert first.fingerprint == again.fingerprint != shorter.fingerprint
    assert first.batch.n_sessions > 0
    one, two = train(first), train(again)
    assert one.files() == two.files()
    assert one.training["since_ns"] == judged_fleet.since_ns


def test_ratings_are_the_higher_unless_the_metadata_declares_one() -> None:
    window = StationRatings(np.array(["A", "B"], dtype=object), np.array([11e3, 50e3]))
    trained = StationRatings(np.array(["B", "C"], dtype=object), np.array([150e3, 22e3]))
    merged = merge_ratings(window, trained, np.array(["A"]))
    assert merged.lookup(np.array(["A", "B", "C", "D"], dtype=object)).tolist()[:3] == [
        11e3,
        150e3,
        22e3,
    ]
    declared_b = merge_ratings(window, trained, np.array(["B"]))
    assert declared_b.lookup(np.array(["B"], dtype=object)).tolist() == [50e3]


def test_a_rating_is_measured_only_where_neither_side_knows_more() -> None:
    ids = np.array(["A", "B", "C"], dtype=object)
    window = StationRatings(ids[:2], np.array([7e3, 7e3]), None, np.array([True, True]))
    trained = StationRatings(ids[1:], np.array([11e3, 22e3]), None, np.array([False, True]))
    merged = merge_ratings(window, trained, np.array([], dtype=str))
    # A: only the window, measured; B: the trained model saw an offer; C: only trained, measured
    assert merged.lookup_measured_only(ids).tolist() == [True, False, True]
    declared_a = merge_ratings(window, trained, np.array(["A"]))
    assert not declared_a.lookup_measured_only(ids[:1]).any()
    # a model saved before the flag was kept knows nothing more: read as not measured only
    old = StationRatings(ids[:1], np.array([7e3]))
    assert not old.lookup_measured_only(ids[:1]).any()


def test_which_ratings_are_measured_only_survive_the_registry(
    fleet: Fleet, registry: Registry
) -> None:
    candidate = train(history(fleet), labels=read_labels(fleet.labels))
    info = register_candidate(registry, candidate, created_at=datetime.now(UTC))
    loaded = LearnedState.from_model(registry.load(info.version)).ratings
    saved = candidate.arrays[RATINGS_FILE]
    assert loaded.measured_only is not None and saved["measured_only"].dtype == bool
    assert np.array_equal(loaded.station_ids.astype(str), saved["station_ids"])
    assert np.array_equal(loaded.measured_only, saved["measured_only"])
