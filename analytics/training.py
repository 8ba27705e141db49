"""Training: history read from an event file or from InfluxDB, fitted, measured on a held-out part.

The history is assembled into sessions as detection assembles them, then split by station: a
fifth of the stations (by a hash of the station id, so the same data always splits the same
way, the usual 80/20) are held out. The detectors are fitted on the rest (``fit_detectors``) and
what they learned (``analytics.learned``) becomes the candidate. Given labels, the candidate
scores the held-out stations the way the service would (fitted on them, with the trained state
put in place) and so do the built-in detectors; both are measured with
``models.evaluate`` (precision and recall per kind) and go into the manifest side by side.
Splitting by station keeps a station's sessions, orphan segments and labels on one side.

The whole history is held in memory as one batch: fine for weeks of a few hundred stations,
not for months of thousands (then a sample, as detection fits on, would do).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from analytics.assemble import Assembler
from analytics.batch import SessionBatch
from analytics.detectors import default_detectors, detect, fit_detectors
from analytics.detectors.base import BaseDetector, Detector
from analytics.detectors.ratings import with_stations
from analytics.flags import flags_from_results
from analytics.learned import DESCRIPTIONS, FEATURES, learned_state
from analytics.pipeline import DetectReport, decode_chunks
from analytics.read.partition import list_stations, read_partition, read_sessions
from analytics.window import PARTITION_STATIONS, WINDOW_LOOKBACK
from chargewatch.events import EventDecoder
from chargewatch.influx import InfluxClient
from chargewatch.sites import StationMetadata
from models.artifacts import ModelError
from models.evaluate import Label, evaluate
from models.train import Candidate, array_fingerprint, file_fingerprint

__all__ = [
    "HELD_OUT_SHARE",
    "History",
    "held_out",
    "history_from_file",
    "history_from_influx",
    "train",
]

# One station in five is held out: the usual 80/20 split.
HELD_OUT_SHARE = 5


@dataclass(frozen=True, slots=True)
class History:
    """Sessions to learn from, the time they are complete up to, and where they came from."""

    batch: SessionBatch
    now_ns: int
    source: dict[str, Any]  # the input file or window, lines read and rejected
    fingerprint: str


def history_from_file(
    path: Path,
    decoder: EventDecoder,
    *,
    labels_path: Path | None = None,
    stations_path: Path | None = None,
) -> History:
    """Every session of an event file (JSON Lines), as one batch. Bad lines are counted and
    left out (as ``detect --input`` does)."""
    report = DetectReport()
    assembler = Assembler()
    with path.open("rb") as stream:
        for chunk in decode_chunks(stream, decoder, report):
            assembler.register_first_seen(chunk.readings, chunk.events)
            for number, event in chunk.events:
                assembler.add(number, event)
            assembler.add_readings(chunk.readings)
    batch = next(iter(assembler.finish()), None)
    if batch is None or batch.n_sessions == 0:
        raise ModelError(f"{path.name}: no sessions to train on")
    source = {
        "input": str(path),
        "labels": None if labels_path is None else str(labels_path),
        "stations": None if stations_path is None else str(stations_path),
        "lines": report.lines,
        "lines_rejected": report.rejected,
    }
    fingerprint = file_fingerprint([path, labels_path, stations_path])
    return History(batch, assembler.now_ns, source, fingerprint)


def history_from_influx(
    client: InfluxClient, since_ns: int, until_ns: int, *, labels_path: Path | None = None
) -> History:
    """Every session of ``[since, until)`` in InfluxDB (with the look-back detection reads),
    a partition of stations at a time, stacked into one batch."""
    batches: list[SessionBatch] = []
    lines = 0
    stations = list_stations(client)
    for start in range(0, len(stations), PARTITION_STATIONS):
        part = tuple(stations[start : start + PARTITION_STATIONS])
        found = read_sessions(client, part, since_ns, until_ns, lookback=WINDOW_LOOKBACK)
        events, _kept = read_partition(
            client, part, found, since_ns, until_ns, lookback=WINDOW_LOOKBACK
        )
        lines += len(events.readings) + len(events.control)
        assembler = Assembler()
        for event in events.control:
            assembler.add(0, event)
        assembler.add_readings(events.readings)
        batches += [b for b in assembler.finish() if b.n_sessions]
    if not batches:
        raise ModelError("no sessions in the window to train on")
    batch = stack(batches)
    extra = [labels_path.read_bytes()] if labels_path is not None else []
    fingerprint = array_fingerprint(_fields(batch), extra)
    source = {
        "since": _iso(since_ns),
        "until": _iso(until_ns),
        "since_ns": since_ns,
        "until_ns": until_ns,
        "labels": None if labels_path is None else str(labels_path),
        "lines": lines,
        "lines_rejected": 0,
    }
    return History(batch, until_ns, source, fingerprint)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def held_out(station_ids: np.ndarray) -> np.ndarray:
    """Which rows' stations are held out (``HELD_OUT_SHARE``), by a hash of the station id."""
    names = [str(s) for s in station_ids.tolist()]
    return np.array(
        [hashlib.sha256(n.encode()).digest()[0] % HELD_OUT_SHARE == 0 for n in names], dtype=bool
    )


def train(
    history: History,
    *,
    labels: list[Label] | None = None,
    stations: StationMetadata | None = None,
) -> Candidate:
    """Fit on the stations not held out; measure on the held-out ones when labels are given."""
    batch = history.batch
    held = held_out(batch.station_id)
    train_batch, held_batch = batch.take(~held), batch.take(held)
    if train_batch.n_sessions == 0:
        raise ModelError("every station fell in the held-out part: too few stations to train")
    fitted = fit_detectors(with_stations(train_batch, stations), default_detectors())
    state = learned_state([d for d in fitted if isinstance(d, BaseDetector)])
    training = {
        **history.source,
        "rows": batch.n_sessions,
        "sessions": _sessions(batch),
        "samples": int(batch.n_samples.sum()),
        "train": {
            "rows": train_batch.n_sessions,
            "stations": len(set(train_batch.station_id.tolist())),
        },
        "held_out": {
            "rows": held_batch.n_sessions,
            "stations": sorted({str(s) for s in held_batch.station_id.tolist()}),
            "rule": f"sha256(station_id)[0] % {HELD_OUT_SHARE} == 0",
        },
    }
    metrics: dict[str, Any] = {}
    if labels is not None and held_batch.n_sessions:
        held_stations = set(training["held_out"]["stations"])
        kept = [label for label in labels if label.station_id in held_stations]
        metrics = {
            "held_out_labels": len(kept),
            "model": _measure(held_batch, state.detectors(), kept, history.now_ns, stations),
            "built_in": _measure(held_batch, default_detectors(), kept, history.now_ns, stations),
        }
    return Candidate(
        arrays=state.arrays(),
        documents=state.documents(train_batch.n_sessions),
        descriptions=dict(DESCRIPTIONS),
        features=list(FEATURES),
        training=training,
        fingerprint=history.fingerprint,
        metrics=metrics,
    )


def _measure(
    batch: SessionBatch,
    detectors: list[Any],
    labels: list[Label],
    now_ns: int,
    stations: StationMetadata | None,
) -> dict[str, Any]:
    """Precision and recall per kind of ``detectors`` fitted on ``batch`` as a window."""
    chosen: list[Detector] = list(detectors)
    fitted = fit_detectors(with_stations(batch, stations), chosen)
    flags = flags_from_results(batch, detect(batch, now_ns=now_ns, detectors=fitted))
    return evaluate(flags, labels, sessions=_sessions(batch)).to_json()


def _sessions(batch: SessionBatch) -> int:
    return sum(1 for s in batch.session_id.tolist() if s is not None)


def _fields(batch: SessionBatch) -> dict[str, np.ndarray]:
    return {name: getattr(batch, name) for name in batch.__dataclass_fields__ if name != "extra"}


def stack(batches: list[SessionBatch]) -> SessionBatch:
    """Batches of any widths as one, padded as ``analytics.batch`` pads (NaN, 0, False)."""
    width = max(b.n_steps for b in batches)
    padded = []
    for b in batches:
        fields: dict[str, Any] = _fields(b)
        for name, value in fields.items():
            if value.ndim == 2 and value.shape[1] < width:
                fill = np.nan if value.dtype.kind == "f" else 0
                pad = np.full((value.shape[0], width - value.shape[1]), fill, dtype=value.dtype)
                fields[name] = np.concatenate([value, pad], axis=1)
        padded.append(SessionBatch(**fields))
    return SessionBatch.concatenate(padded)
