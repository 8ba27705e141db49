"""Training: history read from an event file or from InfluxDB, fitted, measured on a held-out part.

The history is assembled into sessions as detection assembles them, then split by station: a
fifth of the stations (by a hash of the station id, so the same data always splits the same
way, the usual 80/20) are held out. The detectors are fitted on the rest (``fit_detectors``) and
what they learned (``analytics.learned``) becomes the candidate. Given labels, the candidate
scores the held-out stations the way the service would (fitted on them, with the trained state
put in place) and so do the built-in detectors; both are measured with
``models.evaluate`` (precision and recall per kind) and go into the manifest side by side.
Splitting by station keeps a station's sessions, orphan segments and labels on one side.

Beyond what the detectors' ``fit`` learns, training calibrates each kind's score threshold
(``analytics.calibration``): the candidate's detectors, fitted on the training stations as a
window, score them with the rules' own thresholds; the rows judged normal (not flagged and not
labelled, or named by an operator's negative) give each kind the threshold that keeps its false
alarms at or below the target rate; the held-out stations then say what rate it achieves on data
it was not calibrated on, beside the rule's. And it fits the novelty model
(``analytics.novelty``) on the training stations' closed sessions.

Large history is sampled for training (``Sampler``, ``max_cells=TRAIN_MAX_CELLS``, as
``chargewatch train`` reads; other readers get every row). The history is one padded batch
(rows x the longest row's samples): a month of 500 stations would be ~160 k rows x thousands of
samples, tens of GB. Sessions are streamed out of the assembler as they complete and a row is
kept when a hash of its session id (an orphan segment's station, connector and start) falls
below the share kept; the share halves whenever the rows kept would pad to more than
``TRAIN_MAX_CELLS`` samples. The hash depends on the data alone, so the same history gives the
same sample, and the same fingerprint. The manifest says the share and the rows seen and kept
(``training.sample``). Calibration, the novelty model and the held-out measures then see the
sample only, spread over the whole history but small: on a month of 500 stations (131 k rows,
the longest ~8 k samples) it is ~950 rows, a share of 1/128 (bench/train.py). The padding to the
longest row is what limits it, not the rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from analytics.assemble import MAX_CELLS, Assembler, Handout, ReadingColumns
from analytics.batch import FloatArray, SessionBatch
from analytics.calibration import (
    DEFAULT_TARGET_RATE,
    RULE_FLOOR,
    apply_threshold,
    calibrate,
    false_alarm_rate,
)
from analytics.detectors import default_detectors, detect, fit_detectors
from analytics.detectors.base import BaseDetector, Detector, KindResult
from analytics.detectors.ratings import with_stations
from analytics.flags import flags_from_results
from analytics.learned import DESCRIPTIONS, FEATURES, learned_state
from analytics.novelty import NoveltyModel, scorable, session_features
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
    "TRAIN_MAX_CELLS",
    "History",
    "Sampler",
    "held_out",
    "history_from_file",
    "history_from_influx",
    "train",
]

# One station in five is held out: the usual 80/20 split.
HELD_OUT_SHARE = 5
# The padded samples a training history may hold (``Sampler``): ~75 bytes a cell over the
# batch's arrays, ~0.6 GB, and as much again for the train/held-out copies and the detectors'
# temporaries, within the benchmark's 4 GB (bench/train.py).
TRAIN_MAX_CELLS = 8_000_000
# Sessions stopped before the assembler hands them out to the sampler (as detection's chunks).
HAND_OUT_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class History:
    """Sessions to learn from, the time they are complete up to, and where they came from."""

    batch: SessionBatch
    now_ns: int
    source: dict[str, Any]  # the input file or window, lines read and rejected
    fingerprint: str


class Sampler:
    """Rows kept from batches handed out one after another, at most ``max_cells`` padded
    samples in all (module docstring); ``None`` keeps everything."""

    def __init__(self, max_cells: int | None = TRAIN_MAX_CELLS) -> None:
        self.max_cells = max_cells
        self.share = 1.0
        self.seen = 0
        self._kept: list[tuple[SessionBatch, FloatArray]] = []

    def take(self, batches: Handout | list[SessionBatch]) -> None:
        for batch in batches:
            if not batch.n_sessions:
                continue
            self.seen += batch.n_sessions
            keys = sample_keys(batch)
            keep = keys < self.share
            self._kept.append((batch.take(keep), keys[keep]))
            while self.max_cells is not None and self._cells() > self.max_cells:
                self.share /= 2
                self._kept = [(b.take(k < self.share), k[k < self.share]) for b, k in self._kept]

    def _cells(self) -> int:
        rows = sum(b.n_sessions for b, _ in self._kept)
        longest = max((int(b.n_samples.max(initial=0)) for b, _ in self._kept), default=0)
        return rows * max(longest, 1)

    def batch(self) -> SessionBatch | None:
        """The rows kept, as one batch (None when there are none)."""
        kept = [_trimmed(b) for b, _ in self._kept if b.n_sessions]
        return stack(kept) if kept else None

    def describe(self, rows_kept: int) -> dict[str, Any]:
        return {
            "share": self.share,
            "rows_seen": self.seen,
            "rows_kept": rows_kept,
            "max_cells": self.max_cells,
            "rule": "sha256(session_id, else station|connector|start_ns)[:8] / 2**64 < share",
        }


def sample_keys(batch: SessionBatch) -> FloatArray:
    """Each row's place in [0, 1) for sampling: a hash of its session id, or of an orphan
    segment's station, connector and start."""
    keys = np.empty(batch.n_sessions)
    for i, (sid, station, connector, start) in enumerate(
        zip(
            batch.session_id.tolist(),
            batch.station_id.tolist(),
            batch.connector_id.tolist(),
            batch.start_ns.tolist(),
            strict=True,
        )
    ):
        text = f"s|{sid}" if sid is not None else f"o|{station}|{connector}|{start}"
        keys[i] = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64
    return keys


def _trimmed(batch: SessionBatch) -> SessionBatch:
    """``batch`` without the padding columns beyond its longest row (a sample of a wide batch
    may be much narrower)."""
    width = max(int(batch.n_samples.max(initial=0)), 1)
    if width >= batch.n_steps:
        return batch
    fields: dict[str, Any] = _fields(batch)
    for name, value in fields.items():
        if value.ndim == 2:
            fields[name] = np.ascontiguousarray(value[:, :width])
    return SessionBatch(**fields)


def history_from_file(
    path: Path,
    decoder: EventDecoder,
    *,
    labels_path: Path | None = None,
    stations_path: Path | None = None,
    negatives_path: Path | None = None,
    max_cells: int | None = None,
) -> History:
    """The sessions of an event file (JSON Lines), as one batch in order of first sight; with
    ``max_cells`` (training: ``TRAIN_MAX_CELLS``) streamed and sampled (``Sampler``). Bad
    lines are counted and left out (as ``detect --input`` does)."""
    report = DetectReport()
    assembler = Assembler()
    sampler = Sampler(max_cells)
    with path.open("rb") as stream:
        for chunk in decode_chunks(stream, decoder, report):
            readings = chunk.readings
            assembler.register_first_seen(readings, chunk.events)
            added = 0  # readings before this one are in the assembler
            for number, event in chunk.events:
                assembler.add(number, event)
                if max_cells is not None and assembler.stopped >= HAND_OUT_SESSIONS:
                    added = _add_readings_before(assembler, readings, added, number)
                    sampler.take(assembler.pop_complete(max_cells=MAX_CELLS))
            assembler.add_readings(readings.rows(added, len(readings)))
    sampler.take(assembler.finish(max_cells=None if max_cells is None else MAX_CELLS))
    batch = sampler.batch()
    if batch is None or batch.n_sessions == 0:
        raise ModelError(f"{path.name}: no sessions to train on")
    source = {
        "input": str(path),
        "labels": None if labels_path is None else str(labels_path),
        "negatives": None if negatives_path is None else str(negatives_path),
        "stations": None if stations_path is None else str(stations_path),
        "lines": report.lines,
        "lines_rejected": report.rejected,
        # readings that came after their session was handed out to the sampler (as detection)
        "late_readings": assembler.late_readings,
        "sample": sampler.describe(batch.n_sessions),
    }
    # the negatives file joins the fingerprint only when given: older fingerprints stay valid
    inputs = [path, labels_path, stations_path] + ([negatives_path] if negatives_path else [])
    fingerprint = file_fingerprint(inputs)
    return History(batch, assembler.now_ns, source, fingerprint)


def _add_readings_before(
    assembler: Assembler, readings: ReadingColumns, added: int, number: int
) -> int:
    """Add ``readings[added:]`` that arrived before line ``number``; the new ``added`` (as
    detection does, ``analytics.pipeline``)."""
    end = int(np.searchsorted(readings.arrival, number))
    assembler.add_readings(readings.rows(added, end))
    return end


def history_from_influx(
    client: InfluxClient,
    since_ns: int,
    until_ns: int,
    *,
    labels_path: Path | None = None,
    negatives_path: Path | None = None,
    max_cells: int | None = None,
) -> History:
    """The sessions of ``[since, until)`` in InfluxDB (with the look-back detection reads),
    a partition of stations at a time, stacked into one batch; with ``max_cells`` (training:
    ``TRAIN_MAX_CELLS``) sampled (``Sampler``)."""
    sampler = Sampler(max_cells)
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
        sampler.take(assembler.finish(max_cells=None if max_cells is None else MAX_CELLS))
    batch = sampler.batch()
    if batch is None:
        raise ModelError("no sessions in the window to train on")
    extra = [p.read_bytes() for p in (labels_path, negatives_path) if p is not None]
    fingerprint = array_fingerprint(_fields(batch), extra)
    source = {
        "since": _iso(since_ns),
        "until": _iso(until_ns),
        "since_ns": since_ns,
        "until_ns": until_ns,
        "labels": None if labels_path is None else str(labels_path),
        "negatives": None if negatives_path is None else str(negatives_path),
        "lines": lines,
        "lines_rejected": 0,
        "sample": sampler.describe(batch.n_sessions),
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
    negatives: list[Label] | None = None,
    stations: StationMetadata | None = None,
    target_rate: float = DEFAULT_TARGET_RATE,
) -> Candidate:
    """Fit on the stations not held out, calibrate the thresholds and fit the novelty model
    there; measure on the held-out ones (precision and recall when labels are given)."""
    batch = history.batch
    held = held_out(batch.station_id)
    train_batch, held_batch = _trimmed(batch.take(~held)), _trimmed(batch.take(held))
    if train_batch.n_sessions == 0:
        raise ModelError("every station fell in the held-out part: too few stations to train")
    fitted = fit_detectors(with_stations(train_batch, stations), default_detectors())
    state = learned_state([d for d in fitted if isinstance(d, BaseDetector)])
    positives, known_normal = labels or [], negatives or []
    # the rules as the candidate scores the training stations: its detectors fitted on them as a
    # window are these very ones (the band and ratings they learned are the version's), so
    # they are used as they are rather than fitted again
    rule = detect(train_batch, now_ns=history.now_ns, detectors=fitted)
    kinds = calibrate(train_batch, rule, positives, known_normal, target=target_rate)
    thresholds = {kind: c.threshold for kind, c in kinds.items()}
    novelty, novelty_train = _novelty(train_batch)
    state = replace(state, thresholds=thresholds, target_rate=target_rate, novelty=novelty)
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
    metrics: dict[str, Any] = {"novelty": {"train": novelty_train}}
    held_rates: dict[str, dict[str, Any]] = {}
    if held_batch.n_sessions:
        held_rule = _score(held_batch, state.detectors(calibrated=False), history.now_ns, stations)
        held_rates = false_alarm_rate(held_batch, held_rule, positives, known_normal, thresholds)
        if novelty is not None:
            metrics["novelty"]["held_out"] = _spread(novelty.score(held_batch))
        if labels is not None:
            held_stations = set(training["held_out"]["stations"])
            kept = [label for label in labels if label.station_id in held_stations]
            model = [_calibrated(r, thresholds) for r in held_rule]
            built_in = _score(held_batch, default_detectors(), history.now_ns, stations)
            metrics |= {
                "held_out_labels": len(kept),
                "model": _evaluation(held_batch, model, kept),
                "built_in": _evaluation(held_batch, built_in, kept),
            }
    calibration = {
        "target_false_alarm_rate": target_rate,
        "labels": len(positives),
        "negatives": len(known_normal),
        "kinds": {
            kind: {
                "threshold": c.threshold,
                "floor": c.floor,
                "train": c.to_json(),
                "held_out": held_rates.get(kind),
            }
            for kind, c in kinds.items()
        },
    }
    return Candidate(
        arrays=state.arrays(),
        documents=state.documents(train_batch.n_sessions),
        descriptions=dict(DESCRIPTIONS),
        features=list(FEATURES),
        training=training,
        fingerprint=history.fingerprint,
        metrics=metrics,
        calibration=calibration,
    )


def _score(
    batch: SessionBatch,
    detectors: list[Any],
    now_ns: int,
    stations: StationMetadata | None,
) -> list[KindResult]:
    """Every kind's verdict on ``batch`` by ``detectors`` fitted on it as a window."""
    chosen: list[Detector] = list(detectors)
    fitted = fit_detectors(with_stations(batch, stations), chosen)
    return detect(batch, now_ns=now_ns, detectors=fitted)


def _calibrated(result: KindResult, thresholds: dict[str, float]) -> KindResult:
    kind = str(getattr(result.kind, "value", result.kind))
    return apply_threshold(result, thresholds[kind], RULE_FLOOR[kind])


def _evaluation(batch: SessionBatch, results: list[KindResult], labels: list[Label]) -> Any:
    """Precision and recall per kind of ``results`` against ``labels``."""
    flags = flags_from_results(batch, results)
    return evaluate(flags, labels, sessions=_sessions(batch)).to_json()


def _novelty(batch: SessionBatch) -> tuple[NoveltyModel | None, dict[str, Any]]:
    """The novelty model fitted on ``batch``'s closed sessions, and their scores' spread; None
    when fewer than two can be scored (the version then has no novelty part)."""
    rows = np.flatnonzero(scorable(batch))
    if rows.size < 2:
        return None, {"fitted": False, "sessions": int(rows.size)}
    names, matrix = session_features(batch.take(rows))
    model = NoveltyModel.fit(matrix, names)
    return model, {"fitted": True, **_spread(model.score_features(matrix))}


def _spread(scores: FloatArray) -> dict[str, Any]:
    """How many rows were scored, and the median, 99th percentile and highest score."""
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return {"sessions": 0}
    p50, p99, top = np.percentile(finite, [50, 99, 100]).tolist()
    return {"sessions": int(finite.size), "p50": p50, "p99": p99, "max": top}


def _sessions(batch: SessionBatch) -> int:
    return sum(1 for s in batch.session_id.tolist() if s is not None)


def _fields(batch: SessionBatch) -> dict[str, np.ndarray]:
    return {name: getattr(batch, name) for name in batch.__dataclass_fields__ if name != "extra"}


def stack(batches: list[SessionBatch]) -> SessionBatch:
    """Batches of any widths as one, padded as ``analytics.batch`` pads (NaN, 0, False); each
    array is allocated once and filled (no padded copies of every batch first)."""
    if len(batches) == 1:
        return batches[0]
    width = max(b.n_steps for b in batches)
    rows = sum(b.n_sessions for b in batches)
    out: dict[str, Any] = {}
    for name, first in _fields(batches[0]).items():
        if first.ndim == 2:
            fill = np.nan if first.dtype.kind == "f" else 0
            out[name] = np.full((rows, width), fill, dtype=first.dtype)
        else:
            out[name] = np.empty(rows, dtype=first.dtype)
    start = 0
    for b in batches:
        stop = start + b.n_sessions
        for name, value in _fields(b).items():
            if value.ndim == 2:
                out[name][start:stop, : value.shape[1]] = value
            else:
                out[name][start:stop] = value
        start = stop
    return SessionBatch(**out)
