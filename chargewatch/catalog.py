"""The session catalogue: one row per judged session, and every kind's verdict on it.

The detection job (``analytics.window.detect_window``) writes a row for each session it judges,
and writes it again, whole, each time it judges the session again (an open session at every run
until it stops). Readers find sessions here by id, station, time or user pseudonym, never by
scanning InfluxDB, where a session id is an unindexed field; a session's readings are then read
from InfluxDB by its station and connector tags and its time range.

Two tables on the state database's metadata (``chargewatch.state.Base``):

- ``session_catalog``: the session and its figures (``SessionRow``), indexed on
  ``(station_id, start_ns)``, ``(id_pseudonym, start_ns)`` and ``(start_ns, session_id)``.
- ``session_verdicts``: one row per (session, kind) with the kind's score, whether it flagged the
  session and, if so, where and why (``KindVerdict``), indexed for ranking by kind and score.
  The catalogue row carries the same verdicts as JSON, written in the same transaction, so that
  reading a page of sessions takes one query, not one more per ten verdicts.

Scores are kept here rather than as an InfluxDB measurement ``score``, because every question
asked of them is keyed by session: "every score of session X" and "the 50 highest stall scores
of the week at station S, then the next 50" are index lookups and keyset pages here, while in
InfluxDB ``session_id`` is a field (an unbounded id never becomes a tag), so the first is a
scan and the second has no stable order to page by. A session judged again replaces its row
and its verdicts in one transaction, so the catalogue never shows one judgement's figures with
another's scores; points stamped at the session's start would do that only as long as the start
never moved. The cost is that Grafana cannot chart scores from InfluxDB directly: it reads them
from ``GET /api/v1/scores``. Flags stay in InfluxDB as before (``chargewatch.flags``), and their
evidence is copied here with the verdict, so a session's page needs no second lookup.

Pages are keyset cursors: an opaque string naming where the last page ended, valid across
inserts (a new session never shifts a page), refused when it was made for another order.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    and_,
    delete,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from chargewatch.kinds import AnomalyKind
from chargewatch.state import Base, StateError, StateStore, dialect_insert

__all__ = [
    "MAX_PAGE",
    "CursorError",
    "KindVerdict",
    "SessionRow",
    "get_session",
    "list_sessions",
    "rank_sessions",
    "sessions_of_pseudonym",
    "upsert_sessions",
]

MAX_PAGE = 1000  # rows per page at most, whatever a caller asks for
_CHUNK = 500  # ids per IN (...) list: well under every database's limit on bound parameters


class CursorError(ValueError):
    """A page cursor that this catalogue did not make, or made for another order."""


class KindVerdict(NamedTuple):
    """One kind's verdict on a session: its score (None: not scored, ``reason`` says why) and,
    when it flagged the session, where the anomaly shows and the evidence in words. A named
    tuple: a page of 100 sessions makes 1,000 of them, five times faster than a frozen
    dataclass."""

    kind: str
    score: float | None  # [0, 1], higher is more abnormal
    flagged: bool
    start_ns: int | None  # the flagged range; None when not flagged
    end_ns: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A judged session as the catalogue holds it. Figures that could not be computed are None.

    ``flagged_kinds`` are the kinds that flagged it, in kind order; ``verdicts`` every kind's
    verdict (empty when none was stored); ``updated_at_ns`` when it was last judged (UTC ns).
    """

    session_id: str
    station_id: str
    connector_id: int
    start_ns: int
    stop_ns: int | None  # None while open
    id_pseudonym: str | None  # None when unknown
    energy_register_wh: float | None
    energy_power_wh: float | None
    billing_confidence: float | None  # None: unverifiable, nothing checked the register
    billing_notes: tuple[str, ...]  # why the confidence is below 1 or None; empty when it is 1
    duration_s: float
    flagged_kinds: tuple[str, ...]
    updated_at_ns: int
    verdicts: tuple[KindVerdict, ...] = ()


class CatalogEntry(Base):
    __tablename__ = "session_catalog"
    session_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    station_id: Mapped[str] = mapped_column(String(128))
    connector_id: Mapped[int] = mapped_column(Integer)
    start_ns: Mapped[int] = mapped_column(BigInteger)
    stop_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    id_pseudonym: Mapped[str | None] = mapped_column(String(128), nullable=True)
    energy_register_wh: Mapped[float | None] = mapped_column(Float, nullable=True)
    energy_power_wh: Mapped[float | None] = mapped_column(Float, nullable=True)
    billing_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    billing_notes: Mapped[list[str]] = mapped_column(JSON)
    duration_s: Mapped[float] = mapped_column(Float)
    flagged_kinds: Mapped[str] = mapped_column(String(512))  # comma-separated, "" when none
    flagged: Mapped[bool] = mapped_column(Boolean)
    updated_at_ns: Mapped[int] = mapped_column(BigInteger)
    # [[kind, score, flagged, start_ns, end_ns, reason], ...]: session_verdicts' rows, for reading
    verdicts: Mapped[list[list[Any]]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_session_catalog_station_start", "station_id", "start_ns"),
        Index("ix_session_catalog_pseudonym_start", "id_pseudonym", "start_ns"),
        # with the id: pages ordered by (start, id) read the index in order and stop at the limit
        Index("ix_session_catalog_start_id", "start_ns", "session_id"),
    )


class VerdictEntry(Base):
    __tablename__ = "session_verdicts"
    session_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    flagged: Mapped[bool] = mapped_column(Boolean)
    start_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    end_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Copies of the session's, so a ranking filters without a join.
    session_start_ns: Mapped[int] = mapped_column(BigInteger)
    station_id: Mapped[str] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_session_verdicts_kind_score", "kind", "score"),
        Index("ix_session_verdicts_kind_flagged_start", "kind", "flagged", "session_start_ns"),
    )


_CATALOG = cast(Table, CatalogEntry.__table__)
_VERDICTS = cast(Table, VerdictEntry.__table__)
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()
_ready_lock = threading.Lock()


def _engine(store: StateStore) -> Engine:
    """The store's engine, with the catalogue's tables created on first use (a store opened
    before this module was imported did not create them)."""
    engine = store.engine
    if engine in _ready:
        return engine
    with _ready_lock:
        if engine not in _ready:
            try:
                Base.metadata.create_all(engine, tables=[_CATALOG, _VERDICTS])
            except SQLAlchemyError:
                # another process created them at the same moment: they exist now
                Base.metadata.create_all(engine, tables=[_CATALOG, _VERDICTS])
            _add_verdicts_column(engine)
            _allow_unverifiable_confidence(engine)
            for index in _CATALOG.indexes | _VERDICTS.indexes:
                index.create(engine, checkfirst=True)  # an index added since a table was made
            _ready.add(engine)
    return engine


def _add_verdicts_column(engine: Engine) -> None:
    """A catalogue made before rows carried their verdicts gets the column, filled in from
    ``session_verdicts`` (the first version of this module, the same day)."""
    if "verdicts" in {c["name"] for c in inspect(engine).get_columns(_CATALOG.name)}:
        return
    with engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {_CATALOG.name} ADD COLUMN verdicts JSON"))
        found: dict[str, list[list[Any]]] = {}
        v = _VERDICTS.c
        columns = (v.session_id, v.kind, v.score, v.flagged, v.start_ns, v.end_ns, v.reason)
        for sid, *verdict in connection.execute(select(*columns)):
            found.setdefault(sid, []).append(verdict)
        for sid, verdicts in found.items():
            verdicts.sort(key=lambda v: _kind_order(KindVerdict(*v)))
            connection.execute(
                update(_CATALOG).where(_CATALOG.c.session_id == sid).values(verdicts=verdicts)
            )


def _allow_unverifiable_confidence(engine: Engine) -> None:
    """A catalogue made when every session had a billing confidence gets a nullable
    ``billing_confidence`` (None: unverifiable). PostgreSQL drops the constraint; SQLite, which
    cannot, has the table rebuilt under the new schema with its rows."""
    columns = {c["name"]: c for c in inspect(engine).get_columns(_CATALOG.name)}
    if columns["billing_confidence"]["nullable"]:
        return
    name = _CATALOG.name
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(f"ALTER TABLE {name} ALTER COLUMN billing_confidence DROP NOT NULL")
            )
            return
        connection.execute(text(f"ALTER TABLE {name} RENAME TO {name}_old"))
        for index in _CATALOG.indexes:  # SQLite's index names are the database's, not the table's
            connection.execute(text(f"DROP INDEX IF EXISTS {index.name}"))
        _CATALOG.create(connection)
        names = ", ".join(c.name for c in _CATALOG.columns)
        connection.execute(text(f"INSERT INTO {name} ({names}) SELECT {names} FROM {name}_old"))
        connection.execute(text(f"DROP TABLE {name}_old"))


# -- writing --------------------------------------------------------------------------------


def upsert_sessions(store: StateStore, rows: Sequence[SessionRow]) -> None:
    """Store ``rows``, replacing each session's row and all its verdicts (a session judged again
    is judged whole), in one transaction: readers see the old judgement or the new one."""
    if not rows:
        return
    engine = _engine(store)
    latest = {row.session_id: row for row in rows}  # the last of duplicates wins
    catalog = [_catalog_values(row) for row in latest.values()]
    verdicts = [_verdict_values(row, v) for row in latest.values() for v in row.verdicts]
    ids = list(latest)
    try:
        with engine.begin() as connection:
            for start in range(0, len(catalog), _CHUNK):
                connection.execute(_upsert(connection), catalog[start : start + _CHUNK])
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                connection.execute(delete(_VERDICTS).where(_VERDICTS.c.session_id.in_(chunk)))
            for start in range(0, len(verdicts), _CHUNK):
                connection.execute(insert(_VERDICTS), verdicts[start : start + _CHUNK])
    except SQLAlchemyError as exc:
        what = f"cannot store {len(ids)} sessions in the catalogue"
        raise StateError(f"{what}: {_safe(exc)}") from exc


def _upsert(connection: Connection) -> Any:
    """``INSERT ... ON CONFLICT (session_id) DO UPDATE`` in the dialect at hand."""
    statement = dialect_insert(connection.dialect.name, _CATALOG, "the session catalogue")
    excluded = statement.excluded
    columns = {c.name: excluded[c.name] for c in _CATALOG.columns if c.name != "session_id"}
    return statement.on_conflict_do_update(index_elements=["session_id"], set_=columns)


def _catalog_values(row: SessionRow) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "station_id": row.station_id,
        "connector_id": row.connector_id,
        "start_ns": row.start_ns,
        "stop_ns": row.stop_ns,
        "id_pseudonym": row.id_pseudonym,
        "energy_register_wh": _finite(row.energy_register_wh),
        "energy_power_wh": _finite(row.energy_power_wh),
        "billing_confidence": _finite(row.billing_confidence),
        "billing_notes": list(row.billing_notes),
        "duration_s": row.duration_s,
        "flagged_kinds": ",".join(row.flagged_kinds),
        "flagged": bool(row.flagged_kinds),
        "updated_at_ns": row.updated_at_ns,
        "verdicts": [  # in kind order: read back as they are
            [v.kind, _finite(v.score), v.flagged, v.start_ns, v.end_ns, v.reason]
            for v in sorted(row.verdicts, key=_kind_order)
        ],
    }


def _verdict_values(row: SessionRow, verdict: KindVerdict) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "kind": verdict.kind,
        "score": _finite(verdict.score),
        "flagged": verdict.flagged,
        "start_ns": verdict.start_ns,
        "end_ns": verdict.end_ns,
        "reason": verdict.reason,
        "session_start_ns": row.start_ns,
        "station_id": row.station_id,
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# -- reading --------------------------------------------------------------------------------


def get_session(store: StateStore, session_id: str) -> SessionRow | None:
    """The catalogued session with this id, with its verdicts; None when there is none."""
    rows = _fetch(store, select(_CATALOG).where(_CATALOG.c.session_id == session_id))
    return rows[0] if rows else None


def list_sessions(
    store: StateStore,
    *,
    station_id: str | None = None,
    connector_id: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    pseudonym: str | None = None,
    kinds: Sequence[str] | None = None,
    flagged_only: bool = False,
    after: str | None = None,
    limit: int = 100,
) -> tuple[list[SessionRow], str | None]:
    """Sessions that started in ``[since_ns, until_ns)`` and match every filter given, newest
    first (by start, then id), a page of at most ``limit`` (capped at ``MAX_PAGE``) and the
    cursor of the next page (None after the last). ``kinds``: flagged by any of these kinds;
    ``flagged_only``: flagged by any kind. ``after`` is a cursor from an earlier call with the
    same filters; ``CursorError`` when it is not one."""
    query = select(_CATALOG)
    query = _where(query, station_id, connector_id, since_ns, until_ns, pseudonym)
    if flagged_only:
        query = query.where(_CATALOG.c.flagged.is_(True))
    if kinds is not None:
        flagged_by = select(_VERDICTS.c.session_id).where(
            _VERDICTS.c.kind.in_(list(kinds)), _VERDICTS.c.flagged.is_(True)
        )
        query = query.where(_CATALOG.c.session_id.in_(flagged_by))
    if after is not None:
        start_ns, session_id = _decode_cursor(after, "start")
        query = query.where(
            or_(
                _CATALOG.c.start_ns < start_ns,
                and_(_CATALOG.c.start_ns == start_ns, _CATALOG.c.session_id < session_id),
            )
        )
    size = _page_size(limit)
    query = query.order_by(_CATALOG.c.start_ns.desc(), _CATALOG.c.session_id.desc()).limit(size + 1)
    rows = _fetch(store, query)
    if len(rows) <= size:
        return rows, None
    last = rows[size - 1]
    return rows[:size], _encode_cursor("start", last.start_ns, last.session_id)


def rank_sessions(
    store: StateStore,
    kind: str,
    *,
    station_id: str | None = None,
    connector_id: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    min_score: float | None = None,
    after: str | None = None,
    limit: int = 100,
) -> tuple[list[SessionRow], str | None]:
    """Sessions that started in ``[since_ns, until_ns)`` ranked by ``kind``'s score, highest
    first (ties by id), leaving out those it did not score; pages as ``list_sessions``."""
    order = f"score:{kind}"
    verdict = _VERDICTS.c
    ranked = select(verdict.session_id, verdict.score).where(
        verdict.kind == kind, verdict.score.is_not(None)
    )
    if station_id is not None:
        ranked = ranked.where(verdict.station_id == station_id)
    if since_ns is not None:
        ranked = ranked.where(verdict.session_start_ns >= since_ns)
    if until_ns is not None:
        ranked = ranked.where(verdict.session_start_ns < until_ns)
    if min_score is not None:
        ranked = ranked.where(verdict.score >= min_score)
    if connector_id is not None:
        same_connector = select(_CATALOG.c.session_id).where(
            _CATALOG.c.connector_id == connector_id
        )
        ranked = ranked.where(verdict.session_id.in_(same_connector))
    if after is not None:
        score, session_id = _decode_cursor(after, order)
        ranked = ranked.where(
            or_(
                verdict.score < score,
                and_(verdict.score == score, verdict.session_id < session_id),
            )
        )
    size = _page_size(limit)
    ranked = ranked.order_by(verdict.score.desc(), verdict.session_id.desc()).limit(size + 1)
    try:
        with _engine(store).connect() as connection:
            picked = [(str(r.session_id), float(r.score)) for r in connection.execute(ranked)]
            found = _rows_by_id(connection, [sid for sid, _ in picked[:size]])
    except SQLAlchemyError as exc:
        raise StateError(f"cannot read the session catalogue: {_safe(exc)}") from exc
    rows = [found[sid] for sid, _ in picked[:size] if sid in found]
    if len(picked) <= size:
        return rows, None
    last_id, last_score = picked[size - 1]
    return rows, _encode_cursor(order, last_score, last_id)


def sessions_of_pseudonym(
    store: StateStore, pseudonym: str, since_ns: int, until_ns: int
) -> list[SessionRow]:
    """Every session of one user pseudonym that started in ``[since_ns, until_ns)``, oldest
    first: a billing period's sessions in the order a statement lists them."""
    query = _where(select(_CATALOG), None, None, since_ns, until_ns, pseudonym).order_by(
        _CATALOG.c.start_ns, _CATALOG.c.session_id
    )
    return _fetch(store, query)


def _where(
    query: Select[Any],
    station_id: str | None,
    connector_id: int | None,
    since_ns: int | None,
    until_ns: int | None,
    pseudonym: str | None,
) -> Select[Any]:
    c = _CATALOG.c
    if station_id is not None:
        query = query.where(c.station_id == station_id)
    if connector_id is not None:
        query = query.where(c.connector_id == connector_id)
    if since_ns is not None:
        query = query.where(c.start_ns >= since_ns)
    if until_ns is not None:
        query = query.where(c.start_ns < until_ns)
    if pseudonym is not None:
        query = query.where(c.id_pseudonym == pseudonym)
    return query


def _page_size(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return min(limit, MAX_PAGE)


def _fetch(store: StateStore, query: Select[Any]) -> list[SessionRow]:
    """The catalogue rows ``query`` selects, in its order, each with its verdicts."""
    try:
        with _engine(store).connect() as connection:
            return [_session_row(r) for r in connection.execute(query)]
    except SQLAlchemyError as exc:
        raise StateError(f"cannot read the session catalogue: {_safe(exc)}") from exc


def _rows_by_id(connection: Connection, ids: list[str]) -> dict[str, SessionRow]:
    found: dict[str, SessionRow] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for r in connection.execute(select(_CATALOG).where(_CATALOG.c.session_id.in_(chunk))):
            found[str(r.session_id)] = _session_row(r)
    return found


_KIND_ORDER = {kind.value: i for i, kind in enumerate(AnomalyKind)}


def _kind_order(verdict: KindVerdict) -> tuple[int, str]:
    """Kinds in the order of CONTRACTS.md section 3, any other after them by name."""
    return _KIND_ORDER.get(verdict.kind, len(_KIND_ORDER)), verdict.kind


def _session_row(r: Row[Any]) -> SessionRow:
    kinds = str(r.flagged_kinds)
    verdicts = tuple(
        KindVerdict(kind, score, bool(flagged), start, end, reason)
        for kind, score, flagged, start, end, reason in r.verdicts or ()
    )
    return SessionRow(
        session_id=str(r.session_id),
        station_id=str(r.station_id),
        connector_id=int(r.connector_id),
        start_ns=int(r.start_ns),
        stop_ns=None if r.stop_ns is None else int(r.stop_ns),
        id_pseudonym=r.id_pseudonym,
        energy_register_wh=r.energy_register_wh,
        energy_power_wh=r.energy_power_wh,
        billing_confidence=None if r.billing_confidence is None else float(r.billing_confidence),
        billing_notes=tuple(r.billing_notes or ()),
        duration_s=float(r.duration_s),
        flagged_kinds=tuple(kinds.split(",")) if kinds else (),
        updated_at_ns=int(r.updated_at_ns),
        verdicts=verdicts,
    )


# -- cursors --------------------------------------------------------------------------------


def _encode_cursor(order: str, key: float | int, session_id: str) -> str:
    raw = json.dumps([order, key, session_id], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str, order: str) -> tuple[Any, str]:
    """The (key, session id) a cursor holds, when it was made for ``order``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, key, session_id = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise CursorError("not a cursor this API handed out") from exc
    if made_for != order:
        raise CursorError("this cursor belongs to another listing or order")
    if order == "start":
        valid_key = isinstance(key, int) and not isinstance(key, bool) and -(2**63) <= key < 2**63
    else:
        # a score: a float the database can compare (an integer of 330 digits overflows
        # isfinite, one of 2**64 the database's integer)
        valid_key = (
            isinstance(key, int | float)
            and not isinstance(key, bool)
            and -(2**53) <= key <= 2**53
            and math.isfinite(key)
        )
    # a session id as the catalogue stores it: text that encodes (no lone surrogate) without NUL
    valid_id = (
        isinstance(session_id, str)
        and len(session_id) <= 128
        and "\x00" not in session_id
        and _encodes(session_id)
    )
    if not (valid_key and valid_id):
        raise CursorError("not a cursor this API handed out")
    return key, session_id


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).splitlines()[0]
