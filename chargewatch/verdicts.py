"""Operators' verdicts on flags, and the labels they make (issue 13, "labels from the field").

An operator who looked at a flag says whether it was right: ``confirmed`` (the anomaly is
there, of the flag's kind), ``false_alarm`` (the session was normal for that kind) or
``wrong_kind`` (something was wrong, but of another kind, which the verdict names). Verdicts
are what make retraining meaningful on a real network, where no simulator's labels exist.

Flag ids. A stored flag (``chargewatch.flags``) is an InfluxDB point with no id of its own, so
this module gives each one a stable, URL-safe id, ``f1.<base64url of a JSON array>``:

- a flag on a session: ``["s", station_id, connector_id, kind, session_id]``; the same whether
  the session was judged once or ten times, wherever its flag's range moved meanwhile;
- a flag outside any session: ``["o", station_id, connector_id, kind, start_ns]``.

The id is reversible, so a flag is found from its id by one query on its one series (station,
connector and kind are tags), never by scanning every flag; each flag has exactly one id
(``parse_flag_id`` refuses any other spelling of the same array). Session and station ids are
not personal data; an id tag never appears in a flag, a verdict or an id.

Storage. Table ``flag_verdicts`` on the state database's metadata: one row per verdict posted,
never updated, so a flag's history is kept and the latest (highest row id) is its verdict. Each
row copies the flag as it was judged (session, station, connector, kind, start, end): a flag
that a later detection run deletes or moves keeps the verdict it had, and the export needs no
InfluxDB. ``who`` is what the operator typed; ``key_id`` the public part of the API key that
posted it (``chargewatch keys list``), never the key.

Labels. ``labels_from_verdicts`` turns the latest verdict of each flag into CONTRACTS.md
section 2 labels and "negatives", pairs judged normal for a kind (see its docstring).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

import orjson
from sqlalchemy import BigInteger, DateTime, Engine, Integer, Row, String, Table, Text, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from chargewatch.events import format_ts
from chargewatch.flags import FLAG_MEASUREMENT, Flag, flags_from_series
from chargewatch.influx import InfluxClient, quote_ident, quote_literal
from chargewatch.kinds import AnomalyKind
from chargewatch.state import Base, StateError, StateStore

__all__ = [
    "MAX_COMMENT_CHARS",
    "MAX_FLAG_ID_CHARS",
    "MAX_WHO_CHARS",
    "FlagKey",
    "FlagVerdict",
    "LabelSet",
    "Verdict",
    "VerdictDesk",
    "find_flag",
    "flag_id",
    "labels_from_verdicts",
    "latest_verdicts",
    "latest_verdicts_between",
    "parse_flag_id",
    "record_verdict",
    "session_flag_id",
    "verdict_history",
]

# A comment is a note for the next person (what was seen, a ticket number), not a report:
# 2000 characters is a long paragraph and keeps a verdict row small.
MAX_COMMENT_CHARS = 2000
# Who judged: a name or an e-mail address; 128, as every identifier of the project.
MAX_WHO_CHARS = 128
# The longest id this module makes: two 128-character ids of up to 4 UTF-8 bytes each, the
# JSON around them, base64 (4/3) and the prefix stay under 1,500; 2,048 leaves room.
MAX_FLAG_ID_CHARS = 2048
_PREFIX = "f1."
_CHUNK = 500  # ids per IN (...) list: well under every database's limit on bound parameters


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    FALSE_ALARM = "false_alarm"
    WRONG_KIND = "wrong_kind"


# -- flag ids ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlagKey:
    """What a flag id says: the flag's series and its session, or its start when it has none."""

    station_id: str
    connector_id: int
    kind: str
    session_id: str | None
    start_ns: int | None  # only for a flag outside any session


def flag_id(flag: Flag) -> str:
    """The flag's stable, URL-safe id (see the module's docstring)."""
    if flag.session_id is not None:
        return session_flag_id(flag.station_id, flag.connector_id, flag.kind, flag.session_id)
    return _encode(["o", flag.station_id, flag.connector_id, flag.kind, flag.start_ns])


def session_flag_id(station_id: str, connector_id: int, kind: str, session_id: str) -> str:
    """The id of a session's flag of ``kind``, from the session alone (its catalogue row)."""
    return _encode(["s", station_id, connector_id, kind, session_id])


def _encode(parts: list[Any]) -> str:
    return _PREFIX + base64.urlsafe_b64encode(orjson.dumps(parts)).decode("ascii").rstrip("=")


def parse_flag_id(text: str) -> FlagKey:
    """The key of a flag id; ``ValueError`` says why ``text`` is not one this module made."""
    if not text.startswith(_PREFIX) or len(text) > MAX_FLAG_ID_CHARS:
        raise ValueError("not a flag id (ids start with f1.; take them from GET /api/v1/flags)")
    body = text.removeprefix(_PREFIX)
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise ValueError("not a flag id (it does not decode)") from None
    if not (isinstance(parts, list) and len(parts) == 5 and parts[0] in ("s", "o")):
        raise ValueError("not a flag id (it does not hold a flag's key)")
    form, station_id, connector_id, kind, last = parts
    if (
        not isinstance(station_id, str)
        or isinstance(connector_id, bool)
        or not isinstance(connector_id, int)
        or kind not in set(AnomalyKind)
        or (form == "s" and not isinstance(last, str))
        or (form == "o" and (isinstance(last, bool) or not isinstance(last, int)))
    ):
        raise ValueError("not a flag id (it does not hold a flag's key)")
    # what an event may carry: printable identifiers of 1-128 characters (InfluxQL cannot quote
    # a carriage return or a NUL), a connector and a start that fit in 64 bits; anything else
    # names no stored flag, and reached InfluxDB as a query it refused
    texts = (station_id, last) if form == "s" else (station_id,)
    if not all(0 < len(t) <= 128 and t.isprintable() for t in texts):
        raise ValueError("not a flag id (an identifier in it is no station's or session's)")
    if not (0 <= connector_id < 2**31) or (form == "o" and not -(2**63) <= last < 2**63):
        raise ValueError("not a flag id (a number in it is out of range)")
    if _encode(parts) != text:  # one id per flag: no other spelling of the same key
        raise ValueError("not a flag id (not in the form this API hands out)")
    if form == "s":
        return FlagKey(station_id, connector_id, kind, last, None)
    return FlagKey(station_id, connector_id, kind, None, last)


def find_flag(client: InfluxClient, key: FlagKey) -> Flag | None:
    """The stored flag with this key, or None. One series (its tags) is read: a session's flag
    by its ``session_id`` field, over all time (a flag's start may lie anywhere, a 1970 clock
    included), another by its start."""
    where = [
        f"station_id = {quote_literal(key.station_id)}",
        f"connector_id = {quote_literal(str(key.connector_id))}",
        f"kind = {quote_literal(key.kind)}",
    ]
    if key.session_id is not None:
        where.append(f"session_id = {quote_literal(key.session_id)}")
    else:
        where.append(f"time = {key.start_ns}")
    query = f"SELECT * FROM {quote_ident(FLAG_MEASUREMENT)} WHERE {' AND '.join(where)}"
    found = [f for f in flags_from_series(client.query(query)) if f.session_id == key.session_id]
    return found[-1] if found else None  # one per (session, kind); the latest if ever more


@dataclass(frozen=True, slots=True)
class VerdictDesk:
    """What the API needs of verdicts: flags from InfluxDB, verdicts in the state database.
    Blocking: call from a worker thread."""

    influx: InfluxClient
    store: StateStore

    def find(self, key: FlagKey) -> Flag | None:
        return find_flag(self.influx, key)

    def record(
        self,
        flag: Flag,
        verdict: Verdict,
        *,
        right_kind: str | None,
        comment: str,
        who: str,
        key_id: str | None,
    ) -> FlagVerdict:
        return record_verdict(
            self.store,
            flag,
            verdict,
            right_kind=right_kind,
            comment=comment,
            who=who,
            key_id=key_id,
        )

    def latest(self, flag_ids: Sequence[str]) -> dict[str, FlagVerdict]:
        return latest_verdicts(self.store, flag_ids)

    def history(self, flag_id_: str) -> list[FlagVerdict]:
        return verdict_history(self.store, flag_id_)


# -- the table --------------------------------------------------------------------------------


class FlagVerdictEntry(Base):
    """One verdict as posted (never updated: the latest row of a flag is its verdict)."""

    __tablename__ = "flag_verdicts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # sha256 of the flag id, hex: an index of fixed width, whatever the id's length
    flag_digest: Mapped[str] = mapped_column(String(64), index=True)
    flag_id: Mapped[str] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(16))
    right_kind: Mapped[str | None] = mapped_column(String(64), nullable=True)
    comment: Mapped[str] = mapped_column(Text)
    who: Mapped[str] = mapped_column(String(MAX_WHO_CHARS))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # the flag as it was judged
    session_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    station_id: Mapped[str] = mapped_column(String(128))
    connector_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    start_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    end_ns: Mapped[int] = mapped_column(BigInteger)


_TABLE = cast(Table, FlagVerdictEntry.__table__)
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()
_ready_lock = threading.Lock()


def _engine(store: StateStore) -> Engine:
    """The store's engine, with the table created on first use (a store opened before this
    module was imported did not create it)."""
    engine = store.engine
    if engine not in _ready:
        with _ready_lock:
            if engine not in _ready:
                try:
                    Base.metadata.create_all(engine, tables=[_TABLE])
                except SQLAlchemyError:  # another process made it at the same moment
                    Base.metadata.create_all(engine, tables=[_TABLE])
                _ready.add(engine)
    return engine


@dataclass(frozen=True, slots=True)
class FlagVerdict:
    """A verdict as stored, with the flag it judged."""

    flag_id: str
    verdict: Verdict
    right_kind: str | None  # only for wrong_kind
    comment: str
    who: str
    key_id: str | None
    at: datetime  # when it was posted, UTC
    flag: Flag  # as judged (score 0 and no reason: those are the detector's, not kept here)


def _digest(flag_id_: str) -> str:
    return hashlib.sha256(flag_id_.encode("utf-8")).hexdigest()


def record_verdict(
    store: StateStore,
    flag: Flag,
    verdict: Verdict,
    *,
    right_kind: str | None,
    comment: str,
    who: str,
    key_id: str | None,
    at: datetime | None = None,
) -> FlagVerdict:
    """Store a verdict on ``flag`` (the caller checked it exists and the fields are valid)."""
    ident = flag_id(flag)
    entry = FlagVerdictEntry(
        flag_digest=_digest(ident),
        flag_id=ident,
        verdict=verdict.value,
        right_kind=right_kind,
        comment=comment,
        who=who,
        key_id=key_id,
        created_at=at or datetime.now(UTC),
        session_id=flag.session_id,
        station_id=flag.station_id,
        connector_id=flag.connector_id,
        kind=flag.kind,
        start_ns=flag.start_ns,
        end_ns=flag.end_ns,
    )
    try:
        with Session(_engine(store)) as session, session.begin():
            session.add(entry)
            session.flush()
            return _verdict(entry)
    except SQLAlchemyError as exc:
        raise StateError(f"cannot store the verdict: {_safe(exc)}") from exc


def latest_verdicts(store: StateStore, flag_ids: Sequence[str]) -> dict[str, FlagVerdict]:
    """The latest verdict of each of these flags that has one, by flag id."""
    wanted = {_digest(i): i for i in flag_ids}
    found: dict[str, FlagVerdict] = {}
    digests = list(wanted)
    try:
        with _engine(store).connect() as connection:
            for start in range(0, len(digests), _CHUNK):
                chunk = digests[start : start + _CHUNK]
                newest = (
                    select(func.max(FlagVerdictEntry.id))
                    .where(FlagVerdictEntry.flag_digest.in_(chunk))
                    .group_by(FlagVerdictEntry.flag_digest)
                )
                rows = connection.execute(select(_TABLE).where(_TABLE.c.id.in_(newest)))
                for row in rows:
                    if wanted.get(row.flag_digest) == row.flag_id:
                        found[row.flag_id] = _verdict(row)
    except SQLAlchemyError as exc:
        raise StateError(f"cannot read verdicts: {_safe(exc)}") from exc
    return found


def verdict_history(store: StateStore, flag_id_: str) -> list[FlagVerdict]:
    """Every verdict on one flag, oldest first."""
    query = select(_TABLE).where(_TABLE.c.flag_digest == _digest(flag_id_)).order_by(_TABLE.c.id)
    try:
        with _engine(store).connect() as connection:
            rows = connection.execute(query)
            return [_verdict(row) for row in rows if row.flag_id == flag_id_]
    except SQLAlchemyError as exc:
        raise StateError(f"cannot read verdicts: {_safe(exc)}") from exc


def latest_verdicts_between(
    store: StateStore, since_ns: int | None = None, until_ns: int | None = None
) -> list[FlagVerdict]:
    """The latest verdict of every judged flag whose anomaly starts in ``[since, until)``
    (the data's time, not when it was judged: a training window takes the labels of its
    data), ordered by the flag's start and id."""
    newest = select(func.max(FlagVerdictEntry.id)).group_by(FlagVerdictEntry.flag_digest)
    query = select(_TABLE).where(_TABLE.c.id.in_(newest))
    if since_ns is not None:
        query = query.where(_TABLE.c.start_ns >= since_ns)
    if until_ns is not None:
        query = query.where(_TABLE.c.start_ns < until_ns)
    query = query.order_by(_TABLE.c.start_ns, _TABLE.c.id)
    try:
        with _engine(store).connect() as connection:
            return [_verdict(row) for row in connection.execute(query)]
    except SQLAlchemyError as exc:
        raise StateError(f"cannot read verdicts: {_safe(exc)}") from exc


def _verdict(row: FlagVerdictEntry | Row[Any]) -> FlagVerdict:
    """A verdict from its row (an ORM object just stored, or a plain row read: ORM objects
    cost 25 us each, a third of an export's time)."""
    at = row.created_at if row.created_at.tzinfo is not None else row.created_at.replace(tzinfo=UTC)
    return FlagVerdict(
        flag_id=row.flag_id,
        verdict=Verdict(row.verdict),
        right_kind=row.right_kind,
        comment=row.comment,
        who=row.who,
        key_id=row.key_id,
        at=at,
        flag=Flag(
            session_id=row.session_id,
            station_id=row.station_id,
            connector_id=row.connector_id,
            kind=row.kind,
            score=0.0,
            start_ns=row.start_ns,
            end_ns=row.end_ns,
            reason="",
        ),
    )


def _safe(exc: SQLAlchemyError) -> str:
    """The error's first line, without the SQL and parameters SQLAlchemy appends."""
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).splitlines()[0]


# -- labels -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelSet:
    """Labels (CONTRACTS.md section 2) and negatives: lines of the same shape, each a (session,
    kind) an operator judged normal for that kind, which retraining takes as known normals."""

    labels: list[dict[str, Any]]
    negatives: list[dict[str, Any]]


def labels_from_verdicts(verdicts: Iterable[FlagVerdict]) -> LabelSet:
    """The latest verdict of each flag as labels and negatives, one line per (session, kind):

    - ``confirmed``: a label of the flag's kind over the flag's range;
    - ``wrong_kind``: a label of the right kind over the flag's range, and a negative for the
      flag's own kind (the operator said it was not that);
    - ``false_alarm``: a negative for the flag's kind, and no label.

    Two verdicts on one (session, kind) make one line over both ranges. A pair that is both
    a label and a negative (two flags of one session judged either way) is a label only: a
    doubtful pair must not teach a model what normal looks like. A flag outside any session
    keeps its connector and range and a null ``session_id``, as labels of such energy do.
    """
    positive: dict[tuple[Any, ...], dict[str, Any]] = {}
    negative: dict[tuple[Any, ...], dict[str, Any]] = {}
    for judged in verdicts:
        flag = judged.flag
        if judged.verdict is Verdict.CONFIRMED:
            _merge(positive, flag, flag.kind)
        elif judged.verdict is Verdict.WRONG_KIND and judged.right_kind is not None:
            _merge(positive, flag, judged.right_kind)
            _merge(negative, flag, flag.kind)
        else:
            _merge(negative, flag, flag.kind)
    negatives = [line for key, line in negative.items() if key not in positive]
    return LabelSet(
        labels=[_line(v) for v in positive.values()], negatives=[_line(v) for v in negatives]
    )


def _merge(into: dict[tuple[Any, ...], dict[str, Any]], flag: Flag, kind: str) -> None:
    # A session is one pair per kind; outside sessions, one per connector, kind and range.
    where: Any = flag.session_id if flag.session_id is not None else flag.start_ns
    key = (flag.session_id is None, where, flag.station_id, flag.connector_id, kind)
    found = into.get(key)
    if found is None:
        into[key] = {
            "session_id": flag.session_id,
            "station_id": flag.station_id,
            "connector_id": flag.connector_id,
            "kind": kind,
            "start": flag.start_ns,
            "end": flag.end_ns,
        }
    else:
        found["start"] = min(found["start"], flag.start_ns)
        found["end"] = max(found["end"], flag.end_ns)


def _line(value: dict[str, Any]) -> dict[str, Any]:
    return {**value, "start": format_ts(value["start"]), "end": format_ts(value["end"])}
