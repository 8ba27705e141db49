"""Detectors fitted on a compact history learn what they learn from the padded sample.

``Handout.history`` gives the rows of the sample the detectors are fitted on as blocks of rows
of like length (``compact_history``), without the padded arrays, which for a day's fleet are
~150 MB and nine tenths padding. Every detector must learn the same from it: a detector that
reads a history's samples other than through ``row_blocks`` fails here.
"""

from __future__ import annotations

import io
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analytics.assemble import Assembler
from analytics.batch import SessionBatch
from analytics.detectors import fit_detectors
from analytics.detectors.prepared import is_compact, row_blocks
from analytics.pipeline import DetectReport, decode_events
from chargewatch.events import EventDecoder
from ingest.pseudonym import Pseudonymizer
from simulator import SimulationConfig, simulate


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder: Path = tmp_path_factory.mktemp("fleet")
    config = SimulationConfig(
        stations=40, hours=24.0, seed=5, start=datetime(2026, 11, 23, tzinfo=UTC)
    )
    simulate(config, folder / "events.jsonl", folder / "labels.jsonl")
    return (folder / "events.jsonl").read_bytes()


def _assembler(data: bytes) -> Assembler:
    assembler = Assembler()
    decoder = EventDecoder(Pseudonymizer(b"k" * 32))
    for arrival, event in decode_events(io.BytesIO(data), decoder, DetectReport()):
        assembler.add(arrival, event)
    return assembler


def _same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.shape == b.shape, where
        if a.dtype == object:
            assert a.tolist() == b.tolist(), where
        else:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
    elif is_dataclass(a) and not isinstance(a, type):
        for f in fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif hasattr(a, "get_params"):  # a detector held by another (meter_mismatch's jump)
        _learned(a, b, where)
    else:
        assert a == b, where


def _learned(a: Any, b: Any, where: str) -> None:
    names = sorted(k for k in vars(a) if k.endswith("_") and not k.startswith("_"))
    assert names == sorted(k for k in vars(b) if k.endswith("_") and not k.startswith("_"))
    for name in names:
        _same(getattr(a, name), getattr(b, name), f"{where}.{name}")


@pytest.mark.parametrize("scored_cells", [20_000, 200_000])
def test_every_detector_learns_the_same_from_the_compact_history(
    fleet: bytes, scored_cells: int
) -> None:
    handout = _assembler(fleet).finish(max_cells=scored_cells, sample_cells=2_000_000)
    assert len(handout) > 1 and handout.has_sample
    compact = handout.history()
    padded = handout.sample
    assert compact is not None and padded is not None
    assert is_compact(compact) and not is_compact(padded)
    blocks, order = row_blocks(compact)
    assert order is not None and len(blocks) > 1  # several blocks of like length
    assert sum(block.n_samples.sum() for block in blocks) == padded.n_samples.sum()
    # the per-session values are the padded sample's, row for row
    for name in SessionBatch.__dataclass_fields__:
        value = getattr(padded, name)
        if name != "extra" and value.ndim == 1:
            _same(getattr(compact, name), value, name)
    from_compact = fit_detectors(compact)
    from_padded = fit_detectors(padded)
    for a, b in zip(from_compact, from_padded, strict=True):
        _learned(a, b, type(a).__name__)


def test_the_history_is_the_padded_sample_when_that_is_mostly_samples() -> None:
    handout = Assembler().finish(max_cells=10)
    assert not handout.has_sample and handout.history() is None
