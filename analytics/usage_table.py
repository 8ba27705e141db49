"""The usage pieces (``analytics.usage``) in the state database too, where the API sums them.

InfluxDB keeps the pieces as measurement ``usage`` for Grafana's time series. Summing them by
quarter hour there is slow: InfluxDB 1.6 took 1.8 s for a week of 100 stations (47,000 pieces,
670 quarter hours of ``GROUP BY time(15m)`` over 170 series; its cost grows with series times
buckets, so 9 s for 500 stations), where one ``GROUP BY quarter_ns`` over an index in SQLite or
PostgreSQL sums the same rows in tens of milliseconds. So the detection job writes each judged
session's pieces here as well, replacing those of an earlier judgement in one transaction, and
``quarter_sums`` reads them.

Table ``usage_pieces``: one row per (session, quarter hour), keyed by both, indexed by quarter
and by (station, quarter).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    BigInteger,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from analytics.batch import FloatArray
from analytics.usage import PIECE_NS, Pieces
from chargewatch.state import Base, StateError, StateStore

__all__ = ["QuarterSums", "UsagePiece", "quarter_sums", "replace_pieces"]

_CHUNK = 500


class UsagePiece(Base):
    __tablename__ = "usage_pieces"
    session_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    quarter_ns: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    station_id: Mapped[str] = mapped_column(String(128))
    connector_id: Mapped[int] = mapped_column(Integer)
    occupied_s: Mapped[float] = mapped_column(Float)
    charging_s: Mapped[float] = mapped_column(Float)
    idle_after_full_s: Mapped[float] = mapped_column(Float)
    energy_wh: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_usage_pieces_quarter", "quarter_ns"),
        Index("ix_usage_pieces_station_quarter", "station_id", "quarter_ns"),
    )


_TABLE = cast(Table, UsagePiece.__table__)
_FIELDS = ("occupied_s", "charging_s", "idle_after_full_s", "energy_wh")
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()
_ready_lock = threading.Lock()


def replace_pieces(store: StateStore, pieces: Pieces, session_ids: Sequence[str]) -> None:
    """Store ``pieces`` as the pieces of ``session_ids`` (the sessions just judged, those with
    no piece included), replacing whatever they had, in one transaction."""
    if not session_ids:
        return
    quarters = pieces.start_ns - pieces.start_ns % PIECE_NS
    rows = [
        {
            "session_id": str(pieces.session_id[i]),
            "quarter_ns": int(quarters[i]),
            "station_id": str(pieces.station_id[i]),
            "connector_id": int(pieces.connector_id[i]),
            **{name: float(getattr(pieces, name)[i]) for name in _FIELDS},
        }
        for i in range(len(pieces))
    ]
    ids = list(dict.fromkeys(session_ids))
    try:
        with _engine(store).begin() as connection:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                connection.execute(delete(_TABLE).where(_TABLE.c.session_id.in_(chunk)))
            for start in range(0, len(rows), _CHUNK):
                connection.execute(insert(_TABLE), rows[start : start + _CHUNK])
    except SQLAlchemyError as exc:
        raise StateError(f"cannot store the usage of {len(ids)} sessions: {_first(exc)}") from exc


@dataclass(frozen=True, slots=True, eq=False)
class QuarterSums:
    """Sums over every connector in scope per quarter hour of a window (arrays of shape
    ``(q,)``, quarter ``i`` starting ``i * 15 min`` after the window)."""

    occupied_s: FloatArray
    charging_s: FloatArray
    idle_after_full_s: FloatArray
    energy_wh: FloatArray


def quarter_sums(
    store: StateStore, since_ns: int, until_ns: int, station_ids: Sequence[str] | None
) -> QuarterSums:
    """``since_ns`` and ``until_ns`` on quarter hours; summed by the database, a row per
    quarter hour that has pieces."""
    c = _TABLE.c
    query: Any = select(c.quarter_ns, *(func.sum(c[name]) for name in _FIELDS)).where(
        c.quarter_ns >= since_ns, c.quarter_ns < until_ns
    )
    if station_ids is not None:
        query = query.where(c.station_id.in_(list(station_ids)))
    query = query.group_by(c.quarter_ns)
    try:
        with _engine(store).connect() as connection:
            result = connection.execute(query)
            # the driver's plain tuples: numbers need no conversion, and numpy reads tuples
            # ten times faster than SQLAlchemy's Row objects
            rows = result.cursor.fetchall() if result.cursor is not None else []
            result.close()
    except SQLAlchemyError as exc:
        raise StateError(f"cannot read the usage pieces: {_first(exc)}") from exc
    size = max(0, (until_ns - since_ns) // PIECE_NS)
    sums = np.zeros((len(_FIELDS), size))
    if rows:
        at = (np.fromiter((r[0] for r in rows), np.int64, len(rows)) - since_ns) // PIECE_NS
        values = np.array([r[1:] for r in rows], dtype=np.float64)
        sums[:, at] = np.nan_to_num(values.T)
    return QuarterSums(*sums)


def _engine(store: StateStore) -> Engine:
    """The store's engine, with the table created once (a store opened before this module was
    imported did not create it)."""
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
