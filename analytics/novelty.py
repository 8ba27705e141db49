"""The novelty score: how odd a session's profile is, in ways no rule names. Reported, never paged.

An ``IsolationForest`` (scikit-learn) is fitted by ``chargewatch train`` on per-session profile
features of history (``session_features``). A session that few random splits isolate from the
others is odd; ``NoveltyModel.score`` gives the forest's anomaly score, 2^(-E[h(x)] / c(n)), in
(0, 1]: about 0.5 for an ordinary session, towards 1 for one unlike the history (Liu, Ting and
Zhou, 2008). It is a score beside the rules' kinds, not a kind: it makes no flag and no alert.

Features (``FEATURE_NAMES``, one column each, from ``analytics.profiles`` and the samples):

- ``log_energy_wh``: ln(1 + energy delivered), the register's (else the integrated power's);
- ``log_duration_s``: ln(1 + start to stop);
- ``log_peak_power_w`` / ``log_mean_power_w``: ln(1 + highest power) and ln(1 + mean power
  while charging); logarithms because energy, time and power span orders of magnitude and the
  forest splits uniformly between a feature's extremes;
- ``plateau_share``: the plateau (80th percentile of charging power) over the peak;
- ``charging_share``, ``suspended_share``, ``idle_share``: time charging, suspended (by the car
  or the charger) and idle after full, over the duration;
- ``taper_share``: when power leaves its plateau for good, over the duration (1: never);
- ``offered_use``: mean charging power over mean power offered (how much of the offer is used);
- ``register_agreement``: energy from integrated power over the register's, clipped to [0, 2];
- ``log_cadence_s``: ln(1 + median seconds between readings);
- ``soc_span_pct``: last minus first state of charge, and ``has_soc`` (1 where SoC is reported).

Missing values (no SoC, no power offered) are filled with the training history's median of the
feature (``fill``), so a missing value alone does not look odd; ``has_soc`` says which sessions
report SoC. Only closed sessions with at least ``MIN_READINGS`` readings are scored: an orphan
segment is no session, and an open one is not yet whole; their score is NaN.

Storage: the fitted forest is written as plain arrays into an NPZ (``to_arrays``), not with
skops. Both avoid pickle; NPZ was chosen because it goes through the registry's one checked
path (SHA-256 against the manifest, ``allow_pickle=False``, numbers and text only), so there is
no second loader with its own list of trusted types to keep in step with scikit-learn's
internals, and a version stays readable by any numpy of the same major version whatever
scikit-learn is installed. What is stored is what scoring needs: per tree, each node's children,
split feature and threshold, and each leaf's path length (depth plus the average path length of
the samples left in it); scoring walks all trees for all rows at once (``score_features``) and
gives scikit-learn's ``-score_samples`` to rounding (a test says so). ``from_arrays`` checks
every index before use (children after their parent, features in range), so a crafted file
cannot loop or read out of bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from analytics.batch import NO_TIME, FloatArray, SessionBatch
from analytics.profiles import profiles
from chargewatch.errors import ChargewatchError

__all__ = [
    "FEATURE_NAMES",
    "MIN_READINGS",
    "NoveltyError",
    "NoveltyModel",
    "scorable",
    "session_features",
]

FEATURE_NAMES = (
    "log_energy_wh",
    "log_duration_s",
    "log_peak_power_w",
    "log_mean_power_w",
    "plateau_share",
    "charging_share",
    "suspended_share",
    "idle_share",
    "taper_share",
    "offered_use",
    "register_agreement",
    "log_cadence_s",
    "soc_span_pct",
    "has_soc",
)
# A session needs a few readings to have a shape: the taper and stall detectors' own minimum.
MIN_READINGS = 3
# The forest: scikit-learn's defaults (100 trees of 256 samples, Liu et al.'s choice), with a
# fixed seed so that the same history gives the same trees and the same artifact hash.
N_TREES = 100
TREE_SAMPLES = 256
SEED = 20261203
# Rows scored at once: (rows x trees) node indices stay a few MB.
SCORE_BLOCK_ROWS = 8192
# Rows profiled at once: about detection's block of padded samples (analytics.detectors).
PROFILE_BLOCK_CELLS = 1 << 19
_LEAF = -1  # scikit-learn's mark of a leaf in children_left / children_right


class NoveltyError(ChargewatchError):
    """A novelty model that cannot be fitted or used; the message says why."""


def scorable(batch: SessionBatch) -> np.ndarray:
    """Rows that get a novelty score: closed sessions with ``MIN_READINGS`` readings or more."""
    is_session = np.array([s is not None for s in batch.session_id.tolist()], dtype=bool)
    closed = np.asarray(batch.stop_ns != NO_TIME, dtype=bool)
    enough = np.asarray(batch.n_samples >= MIN_READINGS, dtype=bool)
    out: np.ndarray = is_session & closed & enough
    return out


def session_features(batch: SessionBatch) -> tuple[list[str], FloatArray]:
    """The feature names and an ``(n, len(FEATURE_NAMES))`` matrix, one row per batch row
    (NaN where a value is missing; rows ``scorable`` rejects are computed all the same)."""
    n = batch.n_sessions
    out = np.full((n, len(FEATURE_NAMES)), np.nan)
    step = max(1, PROFILE_BLOCK_CELLS // max(batch.n_steps, 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        out[start:stop] = _features(batch.rows(start, stop))
    return list(FEATURE_NAMES), out


def _features(batch: SessionBatch) -> FloatArray:
    p = profiles(batch)
    with np.errstate(invalid="ignore", divide="ignore"):
        duration = np.where(p.duration_s > 0, p.duration_s, np.nan)
        register_wh, power_wh = p.energy_register_wh, p.energy_power_wh
        energy = np.where(np.isfinite(register_wh), register_wh, power_wh)
        register = np.where(p.energy_register_wh > 0, p.energy_register_wh, np.nan)
        agreement = np.clip(p.energy_power_wh / register, 0.0, 2.0)
        peak = np.where(p.peak_power_w > 0, p.peak_power_w, np.nan)
        taper = np.where(np.isfinite(p.taper_onset_s), p.taper_onset_s / duration, 1.0)
        offered = np.where(p.mean_offered_w > 0, p.mean_power_w / p.mean_offered_w, np.nan)
        valid = batch.valid
        gaps = np.where(valid[:, 1:] & valid[:, :-1], np.diff(batch.t_ns, axis=1) / 1e9, np.nan)
        cadence = _nanmedian_rows(np.where(gaps >= 0, gaps, np.nan))
        soc = np.where(batch.valid, batch.soc_pct, np.nan)
        first, last = _first_last(soc)
        columns = [
            np.log1p(np.maximum(energy, 0.0)),
            np.log1p(duration),
            np.log1p(peak),
            np.log1p(np.maximum(p.mean_power_w, 0.0)),
            p.plateau_power_w / peak,
            p.charging_s / duration,
            (p.suspended_ev_s + p.suspended_evse_s) / duration,
            p.idle_s / duration,
            np.clip(taper, 0.0, 1.0),
            np.clip(offered, 0.0, 2.0),
            agreement,
            np.log1p(cadence),
            last - first,
            np.isfinite(first).astype(np.float64),
        ]
    return np.column_stack(columns)


def _nanmedian_rows(values: FloatArray) -> FloatArray:
    """Row medians ignoring NaN, NaN for a row without values (no warning)."""
    if values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    ordered = np.sort(values, axis=1)  # NaN sort last
    count = np.isfinite(values).sum(axis=1)
    rows = np.arange(values.shape[0])
    low = ordered[rows, np.maximum((count - 1) // 2, 0)]
    high = ordered[rows, np.maximum(count // 2, 0)]
    return np.where(count > 0, (low + high) / 2.0, np.nan)


def _first_last(values: FloatArray) -> tuple[FloatArray, FloatArray]:
    has = np.isfinite(values)
    rows = np.arange(values.shape[0])
    m = values.shape[1]
    if m == 0:
        nan = np.full(values.shape[0], np.nan)
        return nan, nan
    first = np.argmax(has, axis=1)
    last = m - 1 - np.argmax(has[:, ::-1], axis=1)
    any_ = has.any(axis=1)
    return (
        np.where(any_, values[rows, first], np.nan),
        np.where(any_, values[rows, last], np.nan),
    )


def average_path_length(n: np.ndarray) -> FloatArray:
    """c(n): the average path length of an unsuccessful search in a binary search tree of ``n``
    samples (0 for one, 1 for two); what a leaf of ``n`` samples adds to a path."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    two = n == 2
    more = n > 2
    out[two] = 1.0
    out[more] = 2.0 * (np.log(n[more] - 1.0) + np.euler_gamma) - 2.0 * (n[more] - 1.0) / n[more]
    return out


@dataclass(frozen=True, slots=True, eq=False)
class NoveltyModel:
    """A fitted isolation forest as arrays (module docstring); ``fit`` makes one."""

    names: tuple[str, ...]
    fill: FloatArray  # (features,) the training median, for missing values
    left: np.ndarray  # (trees, nodes) int32 child index, -1 at a leaf (and padding)
    right: np.ndarray
    feature: np.ndarray  # (trees, nodes) int32 split feature (0 at a leaf)
    threshold: FloatArray  # (trees, nodes) go left when value <= threshold
    leaf_path: FloatArray  # (trees, nodes) depth + c(samples in the leaf), at leaves
    norm: float  # c(samples per tree): the expected path length the score is relative to
    fitted_rows: int

    # -- fitting --------------------------------------------------------------------------------

    @classmethod
    def fit(cls, features: FloatArray, names: list[str] | tuple[str, ...]) -> NoveltyModel:
        """An isolation forest over the finite rows of ``features`` (NaN cells filled with the
        column's median); ``NoveltyError`` when there are too few rows to learn from."""
        from sklearn.ensemble import IsolationForest

        matrix = np.asarray(features, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise NoveltyError(f"features are {matrix.shape}, not (rows, {len(names)})")
        if matrix.shape[0] < 2:
            raise NoveltyError(f"{matrix.shape[0]} sessions: too few to learn what is usual")
        with np.errstate(all="ignore"):
            has_any = np.isfinite(matrix).any(axis=0)
            fill = np.where(has_any, np.nanmedian(np.where(has_any, matrix, 0.0), axis=0), 0.0)
        filled = _filled(matrix, fill)
        forest = IsolationForest(
            n_estimators=N_TREES, max_samples=min(TREE_SAMPLES, matrix.shape[0]), random_state=SEED
        ).fit(filled)
        return cls._from_forest(forest, tuple(names), fill, matrix.shape[0])

    @classmethod
    def _from_forest(
        cls, forest: Any, names: tuple[str, ...], fill: FloatArray, rows: int
    ) -> NoveltyModel:
        trees = [e.tree_ for e in forest.estimators_]
        width = max(t.node_count for t in trees)
        shape = (len(trees), width)
        left = np.full(shape, _LEAF, dtype=np.int32)
        right = np.full(shape, _LEAF, dtype=np.int32)
        feature = np.zeros(shape, dtype=np.int32)
        threshold = np.zeros(shape)
        leaf_path = np.zeros(shape)
        n_features = len(names)
        for i, (tree, columns) in enumerate(zip(trees, forest.estimators_features_, strict=True)):
            k = tree.node_count
            is_leaf = tree.children_left[:k] == _LEAF
            # the tree's own column numbers, mapped back when it saw a subset of the features
            used = np.asarray(columns) if len(columns) != n_features else np.arange(n_features)
            left[i, :k] = tree.children_left[:k]
            right[i, :k] = tree.children_right[:k]
            feature[i, :k] = np.where(is_leaf, 0, used[np.maximum(tree.feature[:k], 0)])
            threshold[i, :k] = np.where(is_leaf, 0.0, tree.threshold[:k])
            depth = _depths(tree.children_left[:k], tree.children_right[:k])
            leaf_path[i, :k] = np.where(
                is_leaf, depth + average_path_length(tree.n_node_samples[:k]), 0.0
            )
        norm = float(average_path_length(np.array([forest.max_samples_]))[0])
        return cls(names, fill, left, right, feature, threshold, leaf_path, norm, rows)

    # -- scoring --------------------------------------------------------------------------------

    def score(self, batch: SessionBatch) -> FloatArray:
        """Every row's novelty in (0, 1] (module docstring); NaN where not ``scorable``."""
        names, matrix = session_features(batch)
        if tuple(names) != self.names:
            raise NoveltyError(f"the model's features {self.names} are not this code's {names}")
        out = np.full(batch.n_sessions, np.nan)
        rows = np.flatnonzero(scorable(batch))
        if rows.size:
            out[rows] = self.score_features(matrix[rows])
        return out

    def score_features(self, features: FloatArray) -> FloatArray:
        """The anomaly score of feature rows (scikit-learn's ``-score_samples``)."""
        # the trees were grown on float32 values (scikit-learn's), so compare those
        x = _filled(np.asarray(features, dtype=np.float64), self.fill)
        x = x.astype(np.float32).astype(np.float64)
        out = np.empty(x.shape[0])
        n_trees = self.left.shape[0]
        tree = np.arange(n_trees)[None, :]
        for start in range(0, x.shape[0], SCORE_BLOCK_ROWS):
            block = x[start : start + SCORE_BLOCK_ROWS]
            at = np.zeros((block.shape[0], n_trees), dtype=np.int64)
            rows = np.arange(block.shape[0])[:, None]
            # children lie after their parent (checked on loading): a walk ends within the
            # tree's node count
            for _ in range(self.left.shape[1]):
                go_left = self.left[tree, at]
                inner = go_left != _LEAF
                if not inner.any():
                    break
                value = block[rows, self.feature[tree, at]]
                nxt = np.where(value <= self.threshold[tree, at], go_left, self.right[tree, at])
                at = np.where(inner, nxt, at)
            depth = self.leaf_path[tree, at].sum(axis=1)
            out[start : start + block.shape[0]] = np.exp2(-depth / (n_trees * self.norm))
        return out

    # -- to and from a version's files ------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "feature_names": np.array(self.names, dtype=str),
            "fill": self.fill.astype(np.float64),
            "left": self.left.astype(np.int32),
            "right": self.right.astype(np.int32),
            "feature": self.feature.astype(np.int32),
            "threshold": self.threshold.astype(np.float64),
            "leaf_path": self.leaf_path.astype(np.float64),
            "norm": np.array([self.norm]),
            "fitted_rows": np.array([self.fitted_rows], dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], *, where: str) -> NoveltyModel:
        """A model from ``to_arrays``'s arrays, every index checked; ``NoveltyError`` naming
        the array and what is wrong."""
        need = ("feature_names", "fill", "left", "right", "feature", "threshold", "leaf_path")
        for key in (*need, "norm", "fitted_rows"):
            if key not in arrays:
                raise NoveltyError(f"{where}: array {key!r} is missing")
        names = tuple(str(n) for n in arrays["feature_names"].tolist())
        if names != FEATURE_NAMES:
            raise NoveltyError(f"{where}: feature_names are not this code's {FEATURE_NAMES}")
        fill = arrays["fill"]
        if fill.shape != (len(names),) or fill.dtype.kind != "f" or not np.isfinite(fill).all():
            raise NoveltyError(f"{where}: fill must be {len(names)} finite numbers")
        left, right, feature = arrays["left"], arrays["right"], arrays["feature"]
        threshold, leaf_path = arrays["threshold"], arrays["leaf_path"]
        shape = left.shape
        if len(shape) != 2 or 0 in shape:
            raise NoveltyError(f"{where}: left must be (trees, nodes), is {shape}")
        for key, array in (("right", right), ("feature", feature)):
            if array.shape != shape or array.dtype.kind != "i":
                raise NoveltyError(f"{where}: {key} must be integers shaped {shape}")
        for key, array in (("threshold", threshold), ("leaf_path", leaf_path)):
            if array.shape != shape or array.dtype.kind != "f" or not np.isfinite(array).all():
                raise NoveltyError(f"{where}: {key} must be finite numbers shaped {shape}")
        _check_trees(left, right, feature, len(names), where)
        norm = float(arrays["norm"].reshape(-1)[0]) if arrays["norm"].size == 1 else np.nan
        if not np.isfinite(norm) or norm <= 0:
            raise NoveltyError(f"{where}: norm must be one number > 0")
        rows = arrays["fitted_rows"]
        return cls(
            names,
            fill.astype(np.float64),
            left.astype(np.int32),
            right.astype(np.int32),
            feature.astype(np.int32),
            threshold.astype(np.float64),
            leaf_path.astype(np.float64),
            norm,
            int(rows.reshape(-1)[0]) if rows.size == 1 else 0,
        )


def _filled(matrix: FloatArray, fill: FloatArray) -> FloatArray:
    return np.where(np.isfinite(matrix), matrix, fill[None, :])


def _depths(left: np.ndarray, right: np.ndarray) -> FloatArray:
    """Each node's depth (root 0); scikit-learn numbers a child after its parent."""
    depth = np.zeros(left.size)
    for node in range(left.size):
        for child in (left[node], right[node]):
            if child != _LEAF:
                depth[child] = depth[node] + 1
    return depth


def _check_trees(
    left: np.ndarray, right: np.ndarray, feature: np.ndarray, n_features: int, where: str
) -> None:
    """Children after their parent and inside the tree (so walks end), both or neither at a
    node; split features in range."""
    nodes = np.arange(left.shape[1])[None, :]
    inner = left != _LEAF
    if np.any(inner != (right != _LEAF)):
        raise NoveltyError(f"{where}: a node has one child (left and right disagree)")
    width = left.shape[1]
    for key, child in (("left", left), ("right", right)):
        bad = inner & ((child <= nodes) | (child >= width))
        if bad.any():
            raise NoveltyError(f"{where}: {key} points to a node not after its parent")
    if np.any(inner & ((feature < 0) | (feature >= n_features))):
        raise NoveltyError(f"{where}: feature index out of range 0..{n_features - 1}")
