"""When each flag was first found: the time from an anomaly's start to its flag.

InfluxDB keeps no write time, and a flag's point is rewritten at every judgement of its session
(an open one at every run), as is its catalogue row (``updated_at_ns`` is the *latest*
judgement). So the scheduled detection job notes here, once, the moment it first stored each
flag (its run's wall clock): table ``flag_detections`` on the state database, one row per flag,
inserted if absent and never updated. The time to flag is that moment minus the flag's start as
first found. It includes whatever delayed the finding: data arriving late, the job's interval and
its settle time, a service that was down. Flags stored by ``chargewatch detect --since/--until``
(backfills over old data) note nothing: their delay says nothing about watching live.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from sqlalchemy import BigInteger, Engine, Index, Integer, String, Table, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from chargewatch.figures import TimeToFlag
from chargewatch.flags import Flag
from chargewatch.state import Base, StateError, StateStore, dialect_insert

__all__ = ["FlagDetection", "record_detections", "time_to_flag"]

_CHUNK = 500


class FlagDetection(Base):
    __tablename__ = "flag_detections"
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    connector_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # the session's id; for readings outside any session, "@" and the flag's start
    anchor: Mapped[str] = mapped_column(String(160), primary_key=True)
    start_ns: Mapped[int] = mapped_column(BigInteger)
    detected_ns: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_flag_detections_start", "start_ns"),)


_TABLE = cast(Table, FlagDetection.__table__)
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()
_ready_lock = threading.Lock()


def record_detections(store: StateStore, flags: Sequence[Flag], *, detected_ns: int) -> None:
    """Note ``detected_ns`` as the moment each of ``flags`` was found, unless it was earlier."""
    if not flags:
        return
    rows = [
        {
            "kind": f.kind,
            "station_id": f.station_id,
            "connector_id": f.connector_id,
            "anchor": f.session_id if f.session_id is not None else f"@{f.start_ns}",
            "start_ns": f.start_ns,
            "detected_ns": detected_ns,
        }
        for f in flags
    ]
    engine = _engine(store)
    try:
        with engine.begin() as connection:
            statement = _insert_if_absent(connection.dialect.name)
            for start in range(0, len(rows), _CHUNK):
                connection.execute(statement, rows[start : start + _CHUNK])
    except SQLAlchemyError as exc:
        raise StateError(f"cannot note {len(rows)} flag detections: {_first(exc)}") from exc


def time_to_flag(store: StateStore, since_ns: int, until_ns: int) -> TimeToFlag:
    """Over the noted flags that start in ``[since_ns, until_ns)``."""
    c = _TABLE.c
    query = select(c.kind, c.start_ns, c.detected_ns).where(
        c.start_ns >= since_ns, c.start_ns < until_ns
    )
    try:
        with _engine(store).connect() as connection:
            rows = connection.execute(query).all()
    except SQLAlchemyError as exc:
        raise StateError(f"cannot read flag detections: {_first(exc)}") from exc
    if not rows:
        return TimeToFlag(flags=0, mean_s=None, median_s=None, mean_s_by_kind={})
    kinds = np.array([r[0] for r in rows], dtype=object)
    delay_s = np.array([(r[2] - r[1]) / 1e9 for r in rows], dtype=np.float64)
    names, which = np.unique(kinds.astype(str), return_inverse=True)
    sums = np.bincount(which, delay_s, minlength=names.size)
    counts = np.bincount(which, minlength=names.size)
    return TimeToFlag(
        flags=len(rows),
        mean_s=float(delay_s.mean()),
        median_s=float(np.median(delay_s)),
        mean_s_by_kind={str(k): float(s / n) for k, s, n in zip(names, sums, counts, strict=True)},
    )


def _insert_if_absent(dialect: str) -> Any:
    return dialect_insert(dialect, _TABLE, "flag detections").on_conflict_do_nothing()


def _engine(store: StateStore) -> Engine:
    engine = store.engine
    if engine not in _ready:
        with _ready_lock:
            if engine not in _ready:
                try:
                    _TABLE.create(engine, checkfirst=True)
                except SQLAlchemyError:
                    _TABLE.create(engine, checkfirst=True)  # another process made it just now
                _ready.add(engine)
    return engine


def _first(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).splitlines()[0]
