"""The registry: register, list and show; promote and roll back; and safe loading, where a
changed byte, a pickle, a foreign file or an unknown layout is refused with the file named and
the model in service kept."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from analytics.learned import BUILT_IN, DETECTORS_FILE, TAPER_FILE, ModelSource
from analytics.training import history_from_file, train
from chargewatch.events import EventDecoder
from chargewatch.state import StateStore
from ingest.pseudonym import Pseudonymizer
from models.artifacts import ModelError, read_npz, sha256_bytes
from models.evaluate import read_labels
from models.registry import MANIFEST, Registry
from models.train import Candidate, register_candidate
from tests.models.test_train import Fleet, make_fleet

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return make_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture(scope="module")
def candidate(fleet: Fleet) -> Candidate:
    decoder = EventDecoder(Pseudonymizer(b"registry-test-key" * 2))
    found = history_from_file(fleet.events, decoder, labels_path=fleet.labels)
    return train(found, labels=read_labels(fleet.labels))


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def registry(tmp_path: Path, state: StateStore) -> Registry:
    return Registry(tmp_path / "var" / "models", state.engine)


def register(registry: Registry, candidate: Candidate, day: int) -> str:
    return register_candidate(
        registry, candidate, created_at=datetime(2026, 12, day, tzinfo=UTC)
    ).version


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_register_list_and_show(registry: Registry, candidate: Candidate) -> None:
    version = register(registry, candidate, 1)
    listed = registry.versions()
    assert [v.version for v in listed] == [version]
    assert listed[0].status == "registered" and listed[0].promoted_at is None
    folder = registry.models_dir / version
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, *candidate.files()])
    loaded = registry.load(version)
    assert loaded.arrays[TAPER_FILE]["band"].dtype == np.float64
    assert loaded.documents[DETECTORS_FILE]["detectors"]["early_taper"]["class"] == "EarlyTaper"


def test_promote_and_rollback_round_trip(registry: Registry, candidate: Candidate) -> None:
    first, second = register(registry, candidate, 1), register(registry, candidate, 2)
    assert registry.promoted() is None
    registry.promote(first, now=NOW)
    registry.promote(second, now=NOW)
    assert registry.promoted() == second
    statuses = {v.version: v.status for v in registry.versions()}
    assert statuses == {first: "registered", second: "in service"}
    assert registry.rollback(now=NOW) == first
    assert registry.promoted() == first
    assert registry.rollback(now=NOW) is None  # the built-in detectors again
    with pytest.raises(ModelError, match="nothing to roll back"):
        registry.rollback(now=NOW)


def test_a_changed_byte_is_refused_naming_the_file(
    registry: Registry, candidate: Candidate
) -> None:
    version = register(registry, candidate, 1)
    flip_one_byte(registry.models_dir / version / TAPER_FILE)
    with pytest.raises(ModelError, match=f"{version}/{TAPER_FILE}: SHA-256 differs"):
        registry.load(version)
    with pytest.raises(ModelError, match=TAPER_FILE):
        registry.promote(version, now=NOW)
    assert registry.promoted() is None


def test_a_manifest_rewritten_to_match_is_refused(registry: Registry, candidate: Candidate) -> None:
    """Changing an artifact and its hash in the manifest is caught by the index's digest."""
    version = register(registry, candidate, 1)
    folder = registry.models_dir / version
    flip_one_byte(folder / TAPER_FILE)
    manifest = orjson.loads((folder / MANIFEST).read_bytes())
    manifest["artifacts"][TAPER_FILE]["sha256"] = sha256_bytes((folder / TAPER_FILE).read_bytes())
    (folder / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS) + b"\n")
    with pytest.raises(ModelError, match=f"{version}/{MANIFEST}: changed since it was registered"):
        registry.load(version)


def test_a_foreign_file_in_the_version_is_refused(registry: Registry, candidate: Candidate) -> None:
    version = register(registry, candidate, 1)
    (registry.models_dir / version / "extra.npz").write_bytes(b"not ours")
    with pytest.raises(ModelError, match=r"extra\.npz: not listed in the manifest"):
        registry.load(version)


def test_pickle_content_is_refused(
    tmp_path: Path, registry: Registry, candidate: Candidate
) -> None:
    # a bare pickle named .npz
    bare = tmp_path / "bare.npz"
    bare.write_bytes(pickle.dumps({"band": np.ones(3)}))
    with pytest.raises(ModelError, match=r"bare\.npz: not an NPZ archive"):
        read_npz(bare)
    # an NPZ holding an object array (pickled inside the .npy)
    inside = tmp_path / "inside.npz"
    np.savez(inside, band=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ModelError, match=r"inside\.npz: refused, it holds pickled objects"):
        read_npz(inside)
    # and a version registered with such an artifact, its hashes all in order
    version = register(registry, candidate, 1)
    buffer = io.BytesIO()
    np.savez(buffer, band=np.array([object()], dtype=object))
    _replace_artifact(registry, version, TAPER_FILE, buffer.getvalue())
    with pytest.raises(ModelError, match=f"{TAPER_FILE}: refused, it holds pickled objects"):
        registry.load(version)


def test_an_incompatible_manifest_is_refused(registry: Registry, candidate: Candidate) -> None:
    version = register(registry, candidate, 1)
    folder = registry.models_dir / version
    manifest = orjson.loads((folder / MANIFEST).read_bytes())
    manifest["libraries"]["numpy"] = "99.0.0"
    _replace_manifest(registry, version, manifest)
    with pytest.raises(ModelError, match=f"{MANIFEST}: written with numpy 99.0.0, newer"):
        registry.load(version)
    manifest["schema_version"] = 2
    _replace_manifest(registry, version, manifest)
    with pytest.raises(ModelError, match="schema_version 2 is not the one"):
        registry.load(version)


def test_a_band_of_another_layout_is_refused(registry: Registry, candidate: Candidate) -> None:
    from analytics.learned import LearnedState

    arrays = {name: dict(a) for name, a in candidate.arrays.items()}
    arrays[TAPER_FILE] = {k: v[:, :-1] for k, v in arrays[TAPER_FILE].items()}
    version = register(registry, replace(candidate, arrays=arrays), 1)
    with pytest.raises(ModelError, match=f"{TAPER_FILE}: band is"):
        LearnedState.from_model(registry.load(version))


def test_a_band_above_the_published_floor_is_refused(
    registry: Registry, candidate: Candidate
) -> None:
    """Training only lowers the band; a raised one would flag cars published curves allow."""
    from analytics.learned import LearnedState

    arrays = {name: dict(a) for name, a in candidate.arrays.items()}
    arrays[TAPER_FILE]["band"] = arrays[TAPER_FILE]["band"] * 1.5
    version = register(registry, replace(candidate, arrays=arrays), 1)
    with pytest.raises(ModelError, match="band is above the built-in floor in"):
        LearnedState.from_model(registry.load(version))


def test_the_source_keeps_its_model_when_a_promotion_is_refused(
    registry: Registry, candidate: Candidate
) -> None:
    good, bad = register(registry, candidate, 1), register(registry, candidate, 2)
    source = ModelSource(registry)
    assert source() is None and source.status.version == BUILT_IN
    registry.promote(good, now=NOW)
    detectors = source()
    assert detectors is not None and source.status.version == good
    registry.promote(bad, now=NOW)
    flip_one_byte(registry.models_dir / bad / TAPER_FILE)
    assert source() is not None  # still the good one's detectors
    assert source.status.version == good
    assert source.status.load_failures == 1
    assert source.status.last_error is not None and TAPER_FILE in source.status.last_error
    registry.rollback(now=NOW)
    source()
    assert source.status.version == good and source.status.load_failures == 1
    registry.rollback(now=NOW)
    assert source() is None and source.status.version == BUILT_IN


def test_cli_train_list_show_promote_rollback(fleet: Fleet, tmp_path: Path) -> None:
    data_dir = tmp_path / "cli-var"

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEWATCH_")}
        done = subprocess.run(
            [sys.executable, "-m", "chargewatch", *args],
            env={**env, "CHARGEWATCH_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (done.returncode == 0) is ok, done.stderr
        return done

    trained = run("train", "--input", str(fleet.events), "--labels", str(fleet.labels))
    version = trained.stdout.split()[1].rstrip(":")
    assert version in run("models", "list").stdout
    shown = orjson.loads(run("models", "show", version).stdout)
    assert shown["version"] == version and shown["status"] == "registered"
    assert "in service" not in run("models", "list").stdout
    run("models", "promote", version)
    assert "in service" in run("models", "list").stdout
    assert "built-in is in service" in run("models", "rollback").stdout
    refused = run("models", "promote", "no-such-version", ok=False)
    assert "no model version 'no-such-version'" in refused.stderr
    flip_one_byte(data_dir / "models" / version / DETECTORS_FILE)
    refused = run("models", "show", version, ok=False)
    assert f"{version}/{DETECTORS_FILE}: SHA-256 differs" in refused.stderr


def _replace_artifact(registry: Registry, version: str, name: str, data: bytes) -> None:
    """Swap an artifact and its hash in the manifest, and the manifest's digest in the index:
    what someone with write access to both would do; only the content is left to refuse."""
    folder = registry.models_dir / version
    (folder / name).write_bytes(data)
    manifest = orjson.loads((folder / MANIFEST).read_bytes())
    manifest["artifacts"][name]["sha256"] = sha256_bytes(data)
    _replace_manifest(registry, version, manifest)


def _replace_manifest(registry: Registry, version: str, manifest: dict[str, object]) -> None:
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from models.registry import ModelVersionRow

    data = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS) + b"\n"
    (registry.models_dir / version / MANIFEST).write_bytes(data)
    with Session(registry._engine) as session, session.begin():
        session.execute(
            update(ModelVersionRow)
            .where(ModelVersionRow.version == version)
            .values(manifest_sha256=sha256_bytes(data))
        )


def test_npz_writing_is_deterministic() -> None:
    from models.artifacts import npz_bytes

    arrays = {"b": np.arange(5.0), "a": np.array(["x", "yz"])}
    first = npz_bytes(arrays)
    assert first == npz_bytes(dict(reversed(list(arrays.items()))))
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert [i.date_time for i in archive.infolist()] == [(1980, 1, 1, 0, 0, 0)] * 2
