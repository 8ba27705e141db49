"""Parquet files for analysis: profiles, per-kind scores, flags, verdicts and features of a window.

``chargewatch export`` writes five files into one folder, each opened in one line
(``polars.read_parquet("DIR/scores.parquet")``; pandas with pyarrow reads them too):

- ``profiles.parquet``: one row per session (and orphan segment: energy with no session open,
  ``session_id`` null), its charging profile (``analytics.profiles.Profiles``);
- ``scores.parquet``: one row per session, one column per anomaly kind holding that kind's
  score (null: not scored), the kinds that flagged it, the model that scored, and the columns
  of ``NOVELTY_COLUMNS`` (the novelty model's score: null unless the model carries one);
- ``flags.parquet``: one row per flag (CONTRACTS.md section 4), with the id the API and the
  verdicts know it by;
- ``verdicts.parquet``: one row per verdict an operator posted (the history, not only the
  latest; ``latest`` marks each flag's verdict in force);
- ``features.parquet``: one row per session, the numbers the novelty model learns from
  (``analytics.novelty.session_features``).

Times are UTC ``Datetime("ns")``. No pseudonym is written: an export leaves the service, and a
pseudonym is still personal data (the catalogue and the API keep it, for billing).

Writing uses polars alone (``DataFrame.write_parquet``, no pyarrow), each file to a temporary
name first and renamed, so a reader never opens half a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError

from analytics.batch import NO_TIME, SessionBatch
from analytics.judged import Judged
from analytics.novelty import scorable, session_features
from analytics.profiles import Profiles, profiles
from chargewatch.flags import Flag
from chargewatch.state import StateError, StateStore
from chargewatch.verdicts import FlagVerdictEntry, flag_id

__all__ = [
    "FILES",
    "NOVELTY_COLUMNS",
    "ExportReport",
    "feature_frame",
    "flag_frame",
    "profile_frame",
    "read_verdict_rows",
    "score_frame",
    "verdict_frame",
    "write_export",
]

FILES = ("profiles", "scores", "flags", "verdicts", "features")
# Where the novelty model's per-session score joins the scores (``analytics.novelty``): null
# unless the model that scored has a novelty forest (``Judged.novelty``), and for the rows it
# does not score (orphan segments, open sessions, too few readings).
NOVELTY_COLUMNS = ("novelty",)
_NS = 1_000_000_000
_TIME = pl.Datetime("ns", "UTC")
_VERDICTS_TABLE = "flag_verdicts"


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What was written: rows per file, by file name."""

    folder: Path
    rows: dict[str, int]

    def summary(self) -> str:
        counts = ", ".join(f"{self.rows[name]} {name}" for name in FILES if name in self.rows)
        return f"wrote {counts} (Parquet) to {self.folder}"


# -- frames -------------------------------------------------------------------------------------


def _times(values: np.ndarray) -> pl.Series:
    """ns since the epoch as UTC datetimes, ``NO_TIME`` as null."""
    ints = pl.Series(np.asarray(values, dtype=np.int64))
    return pl.select(pl.when(ints == NO_TIME).then(None).otherwise(ints)).to_series().cast(_TIME)


def _texts(values: np.ndarray) -> pl.Series:
    return pl.Series([None if v is None else str(v) for v in values.tolist()], dtype=pl.String)


def _floats(values: np.ndarray) -> pl.Series:
    """Floats with NaN as null (not measured, not scored)."""
    return pl.Series(np.asarray(values, dtype=np.float64), nan_to_null=True)


def _keys(batch: SessionBatch) -> dict[str, pl.Series]:
    return {
        "session_id": _texts(batch.session_id),
        "station_id": _texts(batch.station_id),
        "connector_id": pl.Series(batch.connector_id.astype(np.int64)),
        "start": _times(batch.start_ns),
    }


def profile_frame(batch: SessionBatch, judged: Profiles) -> pl.DataFrame:
    """One row per batch row: its keys, stop and charging profile."""
    columns: dict[str, pl.Series] = {**_keys(batch), "stop": _times(batch.stop_ns)}
    for field in fields(judged):
        if field.name in ("session_id", "station_id", "connector_id", "start_ns"):
            continue
        values = getattr(judged, field.name)
        columns[field.name] = (
            _texts(values) if values.dtype == object else _floats(values.astype(np.float64))
        )
    return pl.DataFrame(columns)


def score_frame(judged: Judged) -> pl.DataFrame:
    """One row per row judged: every kind's score, the kinds that flagged it, the model, and
    ``NOVELTY_COLUMNS``."""
    columns: dict[str, pl.Series] = _keys(judged.batch)
    for result in judged.results:
        columns[result.kind] = _floats(result.score)
    flagged = np.stack([r.flagged for r in judged.results], axis=1) if judged.results else None
    kinds = judged.kinds
    columns["flagged_kinds"] = pl.Series(
        [
            [kinds[k] for k in np.flatnonzero(row).tolist()]
            for row in (flagged if flagged is not None else np.zeros((judged.batch.n_sessions, 0)))
        ],
        dtype=pl.List(pl.String),
    )
    columns["model"] = pl.Series([judged.model] * judged.batch.n_sessions, dtype=pl.String)
    novelty = judged.novelty
    for name in NOVELTY_COLUMNS:
        columns[name] = (
            _floats(novelty)
            if novelty is not None
            else pl.Series([None] * judged.batch.n_sessions, dtype=pl.Float64)
        )
    return pl.DataFrame(columns)


def flag_frame(flags: list[Flag], model: str) -> pl.DataFrame:
    """One row per flag, with its id (``chargewatch.verdicts.flag_id``)."""
    return pl.DataFrame(
        {
            "flag_id": pl.Series([flag_id(f) for f in flags], dtype=pl.String),
            "session_id": pl.Series([f.session_id for f in flags], dtype=pl.String),
            "station_id": pl.Series([f.station_id for f in flags], dtype=pl.String),
            "connector_id": pl.Series([f.connector_id for f in flags], dtype=pl.Int64),
            "kind": pl.Series([f.kind for f in flags], dtype=pl.String),
            "score": pl.Series([f.score for f in flags], dtype=pl.Float64),
            "start": _times(np.array([f.start_ns for f in flags], dtype=np.int64)),
            "end": _times(np.array([f.end_ns for f in flags], dtype=np.int64)),
            "reason": pl.Series([f.reason for f in flags], dtype=pl.String),
            "model": pl.Series([model] * len(flags), dtype=pl.String),
        }
    )


_VERDICT_SCHEMA: dict[str, Any] = {
    "verdict_id": pl.Int64,
    "flag_id": pl.String,
    "verdict": pl.String,
    "right_kind": pl.String,
    "comment": pl.String,
    "who": pl.String,
    "key_id": pl.String,
    "posted_at": _TIME,
    "session_id": pl.String,
    "station_id": pl.String,
    "connector_id": pl.Int64,
    "kind": pl.String,
    "start": _TIME,
    "end": _TIME,
    "latest": pl.Boolean,
}


def read_verdict_rows(store: StateStore, since_ns: int, until_ns: int) -> list[dict[str, Any]]:
    """Every verdict on a flag whose anomaly starts in ``[since, until)`` (the data's time, as
    ``verdicts export`` picks them), oldest first, as plain values."""
    table = FlagVerdictEntry.__table__
    try:
        engine = store.engine
        if not inspect(engine).has_table(_VERDICTS_TABLE):
            return []  # no verdict was ever posted on this database
        query = (
            select(table)
            .where(table.c.start_ns >= since_ns, table.c.start_ns < until_ns)
            .order_by(table.c.id)
        )
        with engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
    except SQLAlchemyError as exc:
        raise StateError(f"cannot read verdicts: {str(exc).splitlines()[0]}") from exc
    newest: dict[str, int] = {}
    for row in rows:
        newest[row["flag_id"]] = row["id"]
    out = []
    for row in rows:
        posted = row["created_at"]
        if posted.tzinfo is None:  # SQLite hands back naive datetimes: they were stored in UTC
            posted = posted.replace(tzinfo=UTC)
        out.append(
            {
                "verdict_id": row["id"],
                "flag_id": row["flag_id"],
                "verdict": row["verdict"],
                "right_kind": row["right_kind"],
                "comment": row["comment"],
                "who": row["who"],
                "key_id": row["key_id"],
                "posted_at": posted,
                "session_id": row["session_id"],
                "station_id": row["station_id"],
                "connector_id": row["connector_id"],
                "kind": row["kind"],
                "start": row["start_ns"],
                "end": row["end_ns"],
                "latest": newest[row["flag_id"]] == row["id"],
            }
        )
    return out


def verdict_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """The verdict rows of ``read_verdict_rows`` as a frame (``_VERDICT_SCHEMA``)."""
    columns: dict[str, pl.Series] = {}
    for name, dtype in _VERDICT_SCHEMA.items():
        values = [row[name] for row in rows]
        if name in ("start", "end"):
            columns[name] = _times(np.array(values, dtype=np.int64))
        elif name == "posted_at":
            columns[name] = pl.Series(values, dtype=pl.Datetime("us", "UTC")).cast(_TIME)
        else:
            columns[name] = pl.Series(values, dtype=dtype)
    return pl.DataFrame(columns)


def feature_frame(batch: SessionBatch) -> pl.DataFrame:
    """One row per batch row: its keys, whether the novelty model scores it (``scorable``:
    a closed session with enough readings) and the features it learns from
    (``analytics.novelty.FEATURE_NAMES``; null where a value is missing: training fills those
    with the history's median)."""
    names, matrix = session_features(batch)
    columns: dict[str, pl.Series] = {
        **_keys(batch),
        "scorable": pl.Series(scorable(batch), dtype=pl.Boolean),
    }
    for k, name in enumerate(names):
        columns[name] = _floats(matrix[:, k])
    return pl.DataFrame(columns)


# -- the folder ---------------------------------------------------------------------------------


def write_export(folder: Path, judged: Judged, verdict_rows: list[dict[str, Any]]) -> ExportReport:
    """Write the five files of the module docstring into ``folder`` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = profiles(judged.batch)
    frames = {
        "profiles": profile_frame(judged.batch, figures),
        "scores": score_frame(judged),
        "flags": flag_frame(judged.flags, judged.model),
        "verdicts": verdict_frame(verdict_rows),
        "features": feature_frame(judged.batch),
    }
    for name, frame in frames.items():
        target = folder / f"{name}.parquet"
        partial = folder / f".{name}.parquet.partial"
        frame.write_parquet(partial)
        os.replace(partial, target)
    return ExportReport(folder, {name: frame.height for name, frame in frames.items()})
