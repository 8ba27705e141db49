"""Many catalogued sessions at once, as columns: what usage, station and network figures count.

``chargewatch.catalog`` hands out pages of whole rows (with every verdict) for the session
list; figures over a week of a network need a few columns of tens of thousands of sessions, so
they are selected here straight from ``session_catalog`` by its ``start_ns`` indexes, in one
query, and come back as arrays.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, cast

import numpy as np
from sqlalchemy import Engine, Select, Table, select
from sqlalchemy.exc import SQLAlchemyError

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, ObjectArray
from chargewatch.catalog import CatalogEntry
from chargewatch.state import StateError, StateStore

__all__ = ["SessionTable", "pseudonyms_between", "read_sessions"]

_CATALOG = cast(Table, CatalogEntry.__table__)
_CHUNK = 500  # station ids per IN (...) list
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()
_ready_lock = threading.Lock()


@dataclass(frozen=True, slots=True, eq=False)
class SessionTable:
    """Sessions as columns of shape ``(n,)``, ordered by start."""

    session_id: ObjectArray
    station_id: ObjectArray
    connector_id: IntArray
    start_ns: IntArray
    stop_ns: IntArray  # NO_TIME while open
    end_ns: IntArray  # the stop, or the start plus the duration seen so far
    pseudonym: ObjectArray  # str, or None when unknown
    energy_wh: FloatArray  # the register's, else integrated power's; NaN when neither
    duration_s: FloatArray
    flagged_kinds: ObjectArray  # tuple[str, ...]

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])

    @property
    def finished(self) -> BoolArray:
        return np.asarray(self.stop_ns != NO_TIME)

    def take(self, rows: BoolArray | IntArray) -> SessionTable:
        return SessionTable(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def flagged_with(self, kinds: frozenset[str]) -> BoolArray:
        """Sessions flagged with any of ``kinds``."""
        return np.fromiter(
            (not kinds.isdisjoint(found) for found in self.flagged_kinds), bool, count=len(self)
        )


def read_sessions(
    store: StateStore,
    *,
    since_ns: int,
    until_ns: int,
    station_ids: Sequence[str] | None = None,
) -> SessionTable:
    """The catalogued sessions that started in ``[since_ns, until_ns)``, at the given stations
    (None: all)."""
    c = _CATALOG.c
    query = select(
        c.session_id,
        c.station_id,
        c.connector_id,
        c.start_ns,
        c.stop_ns,
        c.id_pseudonym,
        c.energy_register_wh,
        c.energy_power_wh,
        c.duration_s,
        c.flagged_kinds,
    ).where(c.start_ns >= since_ns, c.start_ns < until_ns)
    rows = _run(store, query, station_ids)
    rows.sort(key=lambda r: (r[3], r[0]))
    n = len(rows)
    columns = list(zip(*rows, strict=True)) if rows else [()] * 10
    start = np.fromiter(columns[3], np.int64, count=n)
    stop = np.fromiter((NO_TIME if v is None else v for v in columns[4]), np.int64, count=n)
    register = _floats(columns[6], n)
    power = _floats(columns[7], n)
    duration = _floats(columns[8], n)
    kinds = np.empty(n, dtype=object)
    kinds[:] = [tuple(v.split(",")) if v else () for v in columns[9]]
    return SessionTable(
        session_id=_objects(columns[0], n),
        station_id=_objects(columns[1], n),
        connector_id=np.fromiter(columns[2], np.int64, count=n),
        start_ns=start,
        stop_ns=stop,
        end_ns=np.where(
            stop != NO_TIME, stop, start + np.nan_to_num(duration * 1e9).astype(np.int64)
        ),
        pseudonym=_objects(columns[5], n),
        energy_wh=np.where(np.isfinite(register), register, power),
        duration_s=duration,
        flagged_kinds=kinds,
    )


def pseudonyms_between(
    store: StateStore, *, since_ns: int, until_ns: int, station_ids: Sequence[str] | None = None
) -> ObjectArray:
    """The distinct user pseudonyms of the sessions that started in ``[since_ns, until_ns)``."""
    c = _CATALOG.c
    query = (
        select(c.id_pseudonym)
        .where(c.start_ns >= since_ns, c.start_ns < until_ns, c.id_pseudonym.is_not(None))
        .distinct()
    )
    found = {row[0] for row in _run(store, query, station_ids)}
    return _objects(sorted(found), len(found))


def _run(store: StateStore, query: Select[Any], station_ids: Sequence[str] | None) -> list[Any]:
    """``query``'s rows, for every chunk of ``station_ids`` (None: one query, no filter)."""
    engine = _engine(store)
    chunks = (
        [None]
        if station_ids is None
        else [list(station_ids[i : i + _CHUNK]) for i in range(0, len(station_ids), _CHUNK)]
    )
    rows: list[Any] = []
    try:
        with engine.connect() as connection:
            for chunk in chunks:
                statement = (
                    query if chunk is None else query.where(_CATALOG.c.station_id.in_(chunk))
                )
                # The driver's plain tuples: wrapping tens of thousands of rows in SQLAlchemy's
                # Row objects cost twice the fetch itself (these columns need no conversion).
                result = connection.execute(statement)
                rows += result.cursor.fetchall() if result.cursor is not None else []
                result.close()
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None) or exc
        message = str(original).splitlines()[0]
        raise StateError(f"cannot read the session catalogue: {message}") from exc
    return rows


def _engine(store: StateStore) -> Engine:
    """The store's engine, with the catalogue's table created once (a store opened before
    ``chargewatch.catalog`` was imported did not create it)."""
    engine = store.engine
    if engine not in _ready:
        with _ready_lock:
            if engine not in _ready:
                try:
                    _CATALOG.create(engine, checkfirst=True)
                except SQLAlchemyError:
                    _CATALOG.create(engine, checkfirst=True)  # another process made it just now
                _ready.add(engine)
    return engine


def _floats(values: Sequence[Any], n: int) -> FloatArray:
    return np.fromiter((np.nan if v is None else v for v in values), np.float64, count=n)


def _objects(values: Sequence[Any], n: int) -> ObjectArray:
    out = np.empty(n, dtype=object)
    out[:] = list(values)
    return out
