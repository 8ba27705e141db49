"""What the detectors learn, as a model version's artifacts, and detectors built back from one.

Found by reading every ``fit`` (``analytics.detectors``), what is learned from history is:

- ``early_taper``: the reference band, power over level per (rated-power class, SoC or
  minutes-to-go bin), the built-in floor lowered where history had enough readings
  (``band_``, ``band_count_``, ``band_learned_``);
- ``early_taper``, ``meter_jump``, ``meter_mismatch`` (through its ``meter_jump``),
  ``unauthorized_energy`` and ``stall`` (the bound on a register read for power): each
  station's rated power (``StationRatings``: declared, else the highest offered, raised by
  power measured above it), the same for all five;
- ``concurrent_id_tag`` takes the station metadata (sites, fleet cards) it is fitted with: that
  is the state database's, not learned from data, so it is not stored; the service hands the
  current metadata to every run as it does without a model.

The other kinds learn nothing (their ``fit`` only records that it ran). A version holds
``early_taper.npz`` (the band, its counts, where it was learned), ``station_ratings.npz`` and
``detectors.json`` (each kind's class and parameters, and the band's layout: a version whose
bins are not this code's is refused). Training adds two things no detector's ``fit`` learns:

- ``thresholds.json``: each kind's score threshold, calibrated to a target false-alarm rate on
  history judged normal (``analytics.calibration``), never below the rule's own;
- ``novelty.npz``: the isolation forest that gives each session its ``novelty`` score
  (``analytics.novelty``), a score beside the kinds that flags nothing.

Both are optional on loading: a version made before them scores with the rules' thresholds and
has no novelty model (``LearnedState.novelty`` None).

``ModelDetector`` scores with a version: at each ``fit`` (the detection job fits on every
window) it fits a fresh detector of its kind on the window, as the built-in path does, then puts
the version's learned state in place of what the window taught: the band as trained, and ratings
that are the window's for stations whose rating is declared in the metadata, else the higher of
the window's and the trained one (a rating is never below what the connector has been seen to
offer or deliver, ``analytics.detectors.ratings``; the trained history saw more of it). Its
``score`` is the detector's, with the kind's calibrated threshold applied.

``ModelSource`` is what the detection job asks at every run: it looks up the promoted version,
loads it when it changed, and keeps the model it has when loading fails (logged and counted).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from analytics.batch import SessionBatch
from analytics.calibration import RULE_FLOOR, apply_threshold
from analytics.detectors import DETECTORS, BaseDetector, EarlyTaper, KindResult, MeterMismatch
from analytics.detectors import early_taper as taper
from analytics.detectors.ratings import StationRatings, stations_of
from analytics.novelty import FEATURE_NAMES, NoveltyError, NoveltyModel
from chargewatch.errors import ChargewatchError
from chargewatch.kinds import AnomalyKind
from models.artifacts import ModelError
from models.registry import LoadedModel, Registry

__all__ = [
    "BUILT_IN",
    "LearnedState",
    "ModelDetector",
    "ModelSource",
    "ModelStatus",
    "band_layout",
    "learned_state",
    "merge_ratings",
]

logger = logging.getLogger(__name__)

BUILT_IN = "built-in"  # what scores when no version is promoted
TAPER_FILE = "early_taper.npz"
RATINGS_FILE = "station_ratings.npz"
DETECTORS_FILE = "detectors.json"
THRESHOLDS_FILE = "thresholds.json"
NOVELTY_FILE = "novelty.npz"
DESCRIPTIONS = {
    TAPER_FILE: "early_taper reference band per (rated-power class, SoC/minutes-to-go bin): "
    "band (floor x band_margin, power over level), band_count (history readings per cell), "
    "band_learned (cell lowered from history)",
    RATINGS_FILE: "each station's rated power in W (station_ids, rated_w, notes: why a rating "
    "is above the declared or offered one, empty when not; measured_only: nothing declared nor "
    "offered, the rating is the highest power measured; absent in older versions)",
    DETECTORS_FILE: "each kind's detector class and parameters, what it learned, and the "
    "band's layout (classes' rated-power edges, bins)",
    THRESHOLDS_FILE: "each kind's score threshold (a row stays flagged above it) calibrated to "
    "target_false_alarm_rate on history judged normal, and the rule's own floor under it",
    NOVELTY_FILE: "the novelty isolation forest: per tree, each node's children (left, right; "
    "-1 at a leaf), split feature and threshold, each leaf's path length (leaf_path); the "
    "features' names and the medians that fill missing values (fill); norm = c(samples/tree)",
}
FEATURES = [
    "early_taper: power over the level power should hold (peak so far, capped by the offer), "
    "per reading past the ramp-up, binned by rated-power class and SoC (5 % bins) or, "
    "without SoC, minutes at peak power still to go (15 min bins)",
    "station ratings: declared rated power, highest power offered, highest power measured",
    "thresholds: per kind, the rule's score on the training stations' rows, with the rows "
    "judged normal (not flagged and not labelled, or an operator's negative) and the labels",
    "novelty: per closed session, " + ", ".join(FEATURE_NAMES) + " (analytics.novelty)",
]
_RATED_KINDS = (
    AnomalyKind.EARLY_TAPER,
    AnomalyKind.METER_JUMP,
    AnomalyKind.UNAUTHORIZED_ENERGY,
    AnomalyKind.STALL,
)


def band_layout() -> dict[str, Any]:
    """The band's bins in this code: a version trained with others cannot be used."""
    return {
        "rated_edges_w": [float(x) if np.isfinite(x) else None for x in taper.RATED_EDGES_W],
        "soc_bin_pct": taper.SOC_BIN_PCT,
        "n_soc_bins": taper.N_SOC_BINS,
        "to_go_bin_min": taper.TO_GO_BIN_MIN,
        "n_to_go_bins": taper.N_TO_GO_BINS,
        "shape": [taper.N_CLASSES, taper.N_BINS],
    }


@dataclass(frozen=True, slots=True)
class LearnedState:
    """What a version holds, in the detectors' terms."""

    params: dict[str, dict[str, Any]]  # kind -> __init__ parameters (JSON values)
    band: np.ndarray
    band_count: np.ndarray
    band_learned: np.ndarray
    ratings: StationRatings
    # kind -> calibrated score threshold (analytics.calibration); a kind not named: its rule's
    thresholds: dict[str, float] = field(default_factory=dict)
    target_rate: float | None = None  # what the thresholds were calibrated to (None: not)
    novelty: NoveltyModel | None = None

    # -- to and from a version's files ---------------------------------------------------------

    def arrays(self) -> dict[str, dict[str, np.ndarray]]:
        notes = self.ratings.notes
        note_text = (
            np.array(["" if n is None else str(n) for n in notes], dtype=str)
            if notes is not None
            else np.full(self.ratings.station_ids.size, "", dtype=str)
        )
        novelty = {} if self.novelty is None else {NOVELTY_FILE: self.novelty.to_arrays()}
        return novelty | {
            TAPER_FILE: {
                "band": self.band.astype(np.float64),
                "band_count": self.band_count.astype(np.int64),
                "band_learned": self.band_learned.astype(bool),
            },
            RATINGS_FILE: {
                "station_ids": self.ratings.station_ids.astype(str),
                "rated_w": self.ratings.rated_w.astype(np.float64),
                "notes": note_text,
                "measured_only": (
                    self.ratings.measured_only.astype(bool)
                    if self.ratings.measured_only is not None
                    else np.zeros(self.ratings.station_ids.size, dtype=bool)
                ),
            },
        }

    def documents(self, n_fit_rows: int) -> dict[str, Any]:
        thresholds = {}
        if self.target_rate is not None:
            thresholds[THRESHOLDS_FILE] = {
                "target_false_alarm_rate": self.target_rate,
                "kinds": {
                    kind.value: {
                        "threshold": self.thresholds.get(kind.value, RULE_FLOOR[kind.value]),
                        "floor": RULE_FLOOR[kind.value],
                    }
                    for kind in DETECTORS
                },
            }
        return thresholds | {
            DETECTORS_FILE: {
                "band_layout": band_layout(),
                "detectors": {
                    kind: {"class": DETECTORS[AnomalyKind(kind)].__name__, "params": params}
                    for kind, params in self.params.items()
                },
                "fitted_rows": n_fit_rows,
                "learned": {
                    "early_taper": ["band_", "band_count_", "band_learned_", "ratings_"],
                    "meter_jump": ["ratings_"],
                    "meter_mismatch": ["jump_.ratings_"],
                    "unauthorized_energy": ["ratings_"],
                    "stall": ["ratings_"],
                    "concurrent_id_tag": [],  # station metadata: the state database's
                },
            }
        }

    @classmethod
    def from_model(cls, model: LoadedModel) -> LearnedState:
        """The state of a loaded (verified) version; ``ModelError`` names the file and what
        does not fit this code."""
        doc = _document(model)
        params = _params(doc)
        band = _arrays(model, TAPER_FILE, ("band", "band_count", "band_learned"))
        shape = (taper.N_CLASSES, taper.N_BINS)
        for name, array in band.items():
            if array.shape != shape:
                raise ModelError(
                    f"{model.version}/{TAPER_FILE}: {name} is {array.shape}, not {shape}"
                )
        values = band["band"]
        if values.dtype.kind != "f" or not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ModelError(f"{model.version}/{TAPER_FILE}: band must be finite and >= 0")
        _check_band_below_floor(values, params, f"{model.version}/{TAPER_FILE}")
        rated = _arrays(model, RATINGS_FILE, ("station_ids", "rated_w", "notes"))
        ids, watts, notes = rated["station_ids"], rated["rated_w"], rated["notes"]
        if not (ids.ndim == watts.ndim == notes.ndim == 1 and ids.size == watts.size == notes.size):
            raise ModelError(f"{model.version}/{RATINGS_FILE}: arrays of different lengths")
        if ids.size > 1 and not np.all(ids[1:] > ids[:-1]):
            raise ModelError(f"{model.version}/{RATINGS_FILE}: station_ids must be sorted, unique")
        if watts.dtype.kind != "f" or np.any(np.isinf(watts)) or np.any(watts < 0):
            raise ModelError(f"{model.version}/{RATINGS_FILE}: rated_w must be >= 0 W (or NaN)")
        measured = model.arrays[RATINGS_FILE].get("measured_only")  # absent in older versions
        if measured is not None and (measured.dtype != bool or measured.shape != ids.shape):
            raise ModelError(
                f"{model.version}/{RATINGS_FILE}: measured_only must be booleans, one per station"
            )
        ratings = StationRatings(
            ids.astype(object),
            watts.astype(np.float64),
            np.array([str(n) if n else None for n in notes.tolist()], dtype=object),
            measured,
        )
        thresholds, target = _thresholds(model)
        novelty = None
        if NOVELTY_FILE in model.arrays:
            try:
                novelty = NoveltyModel.from_arrays(
                    model.arrays[NOVELTY_FILE], where=f"{model.version}/{NOVELTY_FILE}"
                )
            except NoveltyError as exc:
                raise ModelError(str(exc)) from None
        return cls(
            params=params,
            band=values,
            band_count=band["band_count"].astype(np.int64),
            band_learned=band["band_learned"].astype(bool),
            ratings=ratings,
            thresholds=thresholds,
            target_rate=target,
            novelty=novelty,
        )

    # -- detectors ------------------------------------------------------------------------------

    def detectors(self, *, calibrated: bool = True) -> list[ModelDetector]:
        """One detector per kind, in ``DETECTORS`` order, scoring with this state; with the
        rules' own thresholds when not ``calibrated`` (what calibration itself looks at)."""
        return [ModelDetector(self, kind, calibrated=calibrated) for kind in DETECTORS]


def learned_state(fitted: list[BaseDetector]) -> LearnedState:
    """What ``fitted`` (``fit_detectors(history)``, one per kind) learned."""
    by_kind = {d.kind: d for d in fitted}
    missing = [k.value for k in DETECTORS if k not in by_kind]
    if missing:
        raise ValueError(f"no fitted detector for {missing}")
    taper_detector = by_kind[AnomalyKind.EARLY_TAPER]
    assert isinstance(taper_detector, EarlyTaper)
    taper_detector.check_is_fitted()
    return LearnedState(
        params={kind.value: _json_params(by_kind[kind]) for kind in DETECTORS},
        band=taper_detector.band_.copy(),
        band_count=taper_detector.band_count_.copy(),
        band_learned=taper_detector.band_learned_.copy(),
        ratings=taper_detector.ratings_,
    )


class ModelDetector:
    """A detector of one kind that scores with a version's learned state (module docstring);
    the ``Detector`` protocol, as the pipeline needs it."""

    def __init__(self, state: LearnedState, kind: AnomalyKind, *, calibrated: bool = True) -> None:
        self._state = state
        self._kind = kind
        self._cls = DETECTORS[kind]
        self._inner: BaseDetector | None = None
        self._floor = RULE_FLOOR[kind.value]
        self._threshold = state.thresholds.get(kind.value, self._floor) if calibrated else None

    @property
    def threshold(self) -> float | None:
        """The calibrated score threshold this detector applies (None: the rule's alone)."""
        return self._threshold

    @property
    def kind(self) -> str:
        return self._kind.value

    @property
    def per_row(self) -> bool:
        return self._cls.per_row

    def fit(self, batch: SessionBatch) -> Self:
        inner = _build(self._cls, self._state.params.get(self._kind.value, {}))
        inner.fit(batch)
        declared, _ = stations_of(batch).declared_ratings()
        if isinstance(inner, EarlyTaper):
            inner.band_ = self._state.band.copy()
            inner.band_count_ = self._state.band_count.copy()
            inner.band_learned_ = self._state.band_learned.copy()
        if self._kind in _RATED_KINDS:
            inner.ratings_ = merge_ratings(inner.ratings_, self._state.ratings, declared)  # type: ignore[attr-defined]
        if isinstance(inner, MeterMismatch):
            jump = inner.jump_
            jump.ratings_ = merge_ratings(jump.ratings_, self._state.ratings, declared)
        self._inner = inner
        return self

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        if self._inner is None:
            from chargewatch.errors import NotFittedError

            raise NotFittedError(f"{self.kind}: the model's detector is not fitted on a window")
        result = self._inner.score(batch, now_ns=now_ns)
        if self._threshold is None:
            return result
        return apply_threshold(result, self._threshold, self._floor)


def merge_ratings(
    window: StationRatings, trained: StationRatings, declared_ids: np.ndarray
) -> StationRatings:
    """Per station: the window's rating where the metadata declares one, else the higher of
    the window's and the trained (either where only one knows the station)."""
    ids = np.union1d(window.station_ids.astype(str), trained.station_ids.astype(str))
    if ids.size == 0:
        return window
    mine = window.lookup(ids.astype(object))
    theirs = trained.lookup(ids.astype(object))
    rated = np.fmax(mine, theirs)
    is_declared = np.isin(ids, np.asarray(declared_ids, dtype=str))
    rated = np.where(is_declared & ~np.isnan(mine), mine, rated)
    notes = np.array(
        [window.note(s) if window.note(s) is not None else trained.note(s) for s in ids.tolist()],
        dtype=object,
    )
    # measured only where neither knows more: a declaration or an offer seen by either stands
    as_object = ids.astype(object)
    known = (
        np.isin(ids, window.station_ids.astype(str)),
        np.isin(ids, trained.station_ids.astype(str)),
    )
    measured_only = (~known[0] | window.lookup_measured_only(as_object)) & (
        ~known[1] | trained.lookup_measured_only(as_object)
    )
    return StationRatings(as_object, rated, notes, measured_only & ~is_declared)


# -- the service's view: which version scores --------------------------------------------------


@dataclass(slots=True)
class ModelStatus:
    """Which version scores, for /healthz and /metrics; load failures counted, not only logged."""

    version: str = BUILT_IN
    loaded_at: datetime | None = None
    load_failures: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelSource:
    """The detectors for the next detection run: those of the promoted version, or None (the
    built-in ones). Asks the registry at every call; never raises."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.status = ModelStatus()
        self._state: LearnedState | None = None

    def __call__(self) -> list[ModelDetector] | None:
        try:
            wanted = self.registry.promoted()
        except (ChargewatchError, SQLAlchemyError) as exc:
            self._failed(f"cannot read the promoted version: {exc}")
            return self._detectors()
        current = self.status.version
        if (wanted or BUILT_IN) != current:
            self._switch(wanted)
        return self._detectors()

    def _switch(self, wanted: str | None) -> None:
        if wanted is None:
            self._state = None
            logger.info("model: no version promoted, the built-in detectors score")
            self._set(BUILT_IN)
            return
        try:
            state = LearnedState.from_model(self.registry.load(wanted))
        # whatever a file holds, the job goes on with the model it has
        except (ChargewatchError, OSError, SQLAlchemyError, ValueError, TypeError) as exc:
            self._failed(f"version {wanted} refused, keeping {self.status.version}: {exc}")
            return
        self._state = state
        logger.info("model: version %s now scores", wanted)
        self._set(wanted)

    def _set(self, version: str) -> None:
        with self.status.lock:
            self.status.version = version
            self.status.loaded_at = datetime.now(UTC)
            self.status.last_error = None

    def _failed(self, message: str) -> None:
        logger.warning("model: %s", message)
        with self.status.lock:
            self.status.load_failures += 1
            self.status.last_error = message

    def _detectors(self) -> list[ModelDetector] | None:
        return None if self._state is None else self._state.detectors()


# -- helpers ------------------------------------------------------------------------------------


def _json_params(detector: BaseDetector) -> dict[str, Any]:
    """``get_params()`` as JSON values; a nested detector (meter_mismatch's jump) as its own
    parameters under ``{"detector": class, "params": ...}``."""
    out: dict[str, Any] = {}
    for name, value in detector.get_params().items():
        if isinstance(value, BaseDetector):
            out[name] = {"detector": type(value).__name__, "params": _json_params(value)}
        else:
            out[name] = value
    return out


def _build(cls: type[BaseDetector], params: dict[str, Any]) -> BaseDetector:
    args = dict(params)
    for name, value in params.items():
        if isinstance(value, dict) and "detector" in value:
            nested = {c.__name__: c for c in DETECTORS.values()}[value["detector"]]
            args[name] = _build(nested, value["params"])
    return cls(**args)


def _document(model: LoadedModel) -> dict[str, Any]:
    doc = model.documents.get(DETECTORS_FILE)
    where = f"{model.version}/{DETECTORS_FILE}"
    if not isinstance(doc, dict):
        raise ModelError(f"{where}: missing or not a JSON object")
    if doc.get("band_layout") != band_layout():
        raise ModelError(f"{where}: band_layout is not this chargewatch's (bins changed)")
    return doc


def _params(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each kind's parameters, checked against this code's detectors (by building them)."""
    found = doc.get("detectors")
    where = DETECTORS_FILE
    if not isinstance(found, dict):
        raise ModelError(f"{where}: field 'detectors' must be an object")
    params: dict[str, dict[str, Any]] = {}
    for kind, cls in DETECTORS.items():
        entry = found.get(kind.value)
        if not isinstance(entry, dict) or entry.get("class") != cls.__name__:
            raise ModelError(f"{where}: detectors.{kind.value} is not a {cls.__name__}")
        given = entry.get("params")
        if not isinstance(given, dict):
            raise ModelError(f"{where}: detectors.{kind.value}.params must be an object")
        try:
            _build(cls, given)
        except (TypeError, KeyError, ValueError) as exc:
            raise ModelError(f"{where}: detectors.{kind.value}.params refused: {exc}") from None
        params[kind.value] = given
    return params


def _check_band_below_floor(
    band: np.ndarray, params: dict[str, dict[str, Any]], where: str
) -> None:
    """History only ever lowers the band below the published curves' floor (``EarlyTaper``:
    it widens the band, never narrows it): a band above the floor x margin in any cell was not
    made by training, and would flag cars that published curves allow."""
    margin = params[AnomalyKind.EARLY_TAPER.value].get("band_margin", EarlyTaper().band_margin)
    if not isinstance(margin, int | float) or not 0 < margin <= 1:
        raise ModelError(f"{where}: early_taper band_margin must lie in (0, 1]")
    ceiling = taper.default_band() * margin
    above = int(np.count_nonzero(band > ceiling * (1 + 1e-9)))
    if above:
        raise ModelError(f"{where}: band is above the built-in floor in {above} cells")


def _thresholds(model: LoadedModel) -> tuple[dict[str, float], float | None]:
    """The calibrated thresholds of a version (none and None for one made before them), each
    checked: a known kind, a number between the rule's floor and 1."""
    doc = model.documents.get(THRESHOLDS_FILE)
    if doc is None:
        return {}, None
    where = f"{model.version}/{THRESHOLDS_FILE}"
    if not isinstance(doc, dict) or not isinstance(doc.get("kinds"), dict):
        raise ModelError(f"{where}: field 'kinds' must be an object")
    target = doc.get("target_false_alarm_rate")
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 <= target < 1:
        raise ModelError(f"{where}: target_false_alarm_rate must be a number in [0, 1)")
    out: dict[str, float] = {}
    for kind, entry in doc["kinds"].items():
        if kind not in RULE_FLOOR:
            raise ModelError(f"{where}: kinds.{kind} is not an anomaly kind of this chargewatch")
        value = entry.get("threshold") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelError(f"{where}: kinds.{kind}.threshold must be a number")
        if not RULE_FLOOR[kind] <= value <= 1:
            raise ModelError(
                f"{where}: kinds.{kind}.threshold {value} is outside [{RULE_FLOOR[kind]}, 1]: "
                "calibration never loosens a rule"
            )
        out[kind] = float(value)
    return out, float(target)


def _arrays(model: LoadedModel, name: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    arrays = model.arrays.get(name)
    if arrays is None:
        raise ModelError(f"{model.version}/{name}: missing from the version")
    for key in keys:
        if key not in arrays:
            raise ModelError(f"{model.version}/{name}: array {key!r} is missing")
    return {key: arrays[key] for key in keys}
