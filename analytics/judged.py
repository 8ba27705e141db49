"""History judged by a chosen model, for evaluation and export: every kind's verdict on every row.

``evaluate --model V``, ``--compare V1 V2`` and ``export`` all need the same thing: sessions
read as training reads them (``analytics.training.history_from_file`` or
``history_from_influx``), the detectors of one model fitted on them the way a detection window
fits (the whole history is the window: station ratings and the band learn from it, and a
version then puts its trained state in place, ``analytics.learned.ModelDetector``), and every
row scored with ``now_ns`` the history's end. A model is named as on the command line: a
registered version, or ``builtin`` for the built-in detectors (what scores when no version is
promoted).

Every row is scored together, so the kind judged across sessions (one id tag at two stations)
sees every partner; only then are the rows asked for kept (``rows``: an export window keeps the
sessions that started in it, the look-back before it only informs the fit).

The whole history is one padded batch in memory (as training holds it): weeks of a few hundred
stations, not months of thousands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.batch import BoolArray, FloatArray, SessionBatch
from analytics.detectors import default_detectors, detect, fit_detectors
from analytics.detectors.base import Detector, KindResult
from analytics.detectors.ratings import with_stations
from analytics.flags import flags_from_results
from analytics.learned import BUILT_IN, LearnedState
from analytics.novelty import NoveltyModel
from chargewatch.flags import Flag
from chargewatch.sites import StationMetadata
from models.artifacts import ModelError
from models.registry import Registry

__all__ = [
    "BUILTIN",
    "BUILTIN_NAMES",
    "Judged",
    "Model",
    "judge",
    "load_model",
    "started_between",
]

# The name of the built-in detectors on the command line (``evaluate --model builtin``), also
# spelt as /healthz shows it (``built-in``). ``train`` never names a version so (its names are
# stamped, ``models.manifest``); a version registered by hand under either name is shadowed.
BUILTIN = "builtin"
BUILTIN_NAMES = frozenset({BUILTIN, BUILT_IN})


@dataclass(frozen=True, slots=True, eq=False)
class Judged:
    """Rows of a history and one model's verdict on each: ``results`` in ``DETECTORS`` order,
    each of shape ``(n,)``; ``flags`` the flag records of those verdicts (CONTRACTS.md section
    4). ``novelty`` is each row's novelty score (``analytics.novelty``: NaN for a row it does
    not score) when the model has a novelty forest, else None."""

    model: str
    batch: SessionBatch
    results: list[KindResult]
    flags: list[Flag]
    now_ns: int
    novelty: FloatArray | None = None

    @property
    def kinds(self) -> list[str]:
        return [result.kind for result in self.results]

    def score_of(self, kind: str) -> FloatArray:
        """Each row's score for ``kind`` (NaN: not scored)."""
        for result in self.results:
            if result.kind == kind:
                return result.score
        raise KeyError(f"kind {kind!r} was not scored by {self.model}")


@dataclass(frozen=True, slots=True, eq=False)
class Model:
    """A model as the command line names it: its unfitted detectors, and its novelty forest
    when the version has one (``analytics.novelty``; the built-in detectors have none)."""

    name: str
    detectors: list[Detector]
    novelty: NoveltyModel | None = None


def load_model(name: str, registry: Registry | None) -> Model:
    """``BUILTIN``'s detectors, or a registered version's (loaded and checked by the registry;
    ``ModelError`` names the file and the reason), with its calibrated thresholds applied."""
    if name in BUILTIN_NAMES:
        return Model(name, list(default_detectors()))
    if registry is None:
        raise ModelError(f"model {name!r}: no model registry to load it from")
    state = LearnedState.from_model(registry.load(name))
    return Model(name, list(state.detectors()), state.novelty)


def judge(
    batch: SessionBatch,
    *,
    model: Model,
    now_ns: int,
    stations: StationMetadata | None = None,
    rows: BoolArray | None = None,
) -> Judged:
    """``model``'s detectors fitted on ``batch`` (with ``stations``' metadata), every row
    scored (and given its novelty when the model has a forest), then the rows picked by
    ``rows`` (all when None) kept with their verdicts."""
    fitted = fit_detectors(with_stations(batch, stations), model.detectors)
    results = detect(batch, now_ns=now_ns, detectors=fitted)
    novelty = model.novelty.score(batch) if model.novelty is not None else None
    if rows is not None:
        batch = batch.take(rows)
        results = [_take(result, rows) for result in results]
        novelty = None if novelty is None else novelty[rows]
    return Judged(
        model=model.name,
        batch=batch,
        results=results,
        flags=flags_from_results(batch, results),
        now_ns=now_ns,
        novelty=novelty,
    )


def started_between(batch: SessionBatch, since_ns: int, until_ns: int) -> BoolArray:
    """Rows (sessions and orphan segments) that started in ``[since, until)``."""
    start = batch.start_ns
    return np.asarray((start >= since_ns) & (start < until_ns), dtype=bool)


def _take(result: KindResult, rows: BoolArray) -> KindResult:
    return KindResult(
        kind=result.kind,
        score=result.score[rows],
        flagged=result.flagged[rows],
        start_ns=result.start_ns[rows],
        end_ns=result.end_ns[rows],
        reason=result.reason[rows],
    )
