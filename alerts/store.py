"""Alert state in the state database (table ``alert_state`` of ``chargewatch.state``).

SQLAlchemy Core on the kernel's engine, so it runs on SQLite and PostgreSQL alike. Rows are
upserted by fingerprint and never deleted: a resolved alert keeps its ``resolved_at``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, Select, Table, or_, select
from sqlalchemy.exc import SQLAlchemyError

from chargewatch.state import AlertState, StateError, dialect_insert

from .lifecycle import AlertRecord, Policy

__all__ = ["AlertQuery", "AlertStore"]

_TABLE = cast(Table, AlertState.__table__)
_COLUMNS = (
    "alertname",
    "severity",
    "station_id",
    "labels",
    "annotations",
    "starts_at",
    "ends_at",
    "last_sent_at",
    "resolved_at",
    "updated_at",
)
_CHUNK = 5_000  # rows per executemany: bounded memory, one transaction for them all


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertQuery:
    """Filters for ``AlertStore.records`` (each ``None``: no filter). ``active``: only active
    (True) or only resolved (False) alerts; ``since``/``until`` bound the alert's activity:
    it started before ``until`` and had not resolved by ``since``."""

    active: bool | None = None
    station_id: str | None = None
    alertname: str | None = None
    severity: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 1000


class AlertStore:
    """Reads and writes ``AlertRecord`` rows; one per process, shared by threads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        _TABLE.create(engine, checkfirst=True)  # StateStore creates it too; harmless twice

    def load(self, *, now: datetime, policy: Policy) -> dict[str, AlertRecord]:
        """The records a cycle starts from after a restart: active ones, and those resolved
        within ``policy.max_backdate`` (``lifecycle.is_kept``)."""
        horizon = now - policy.max_backdate
        query = select(_TABLE).where(
            or_(_TABLE.c.resolved_at.is_(None), _TABLE.c.resolved_at > horizon)
        )
        return {record.fingerprint: record for record in self._select(query, "load")}

    def save(self, records: Sequence[AlertRecord]) -> None:
        """Insert or update ``records`` by fingerprint, all in one transaction."""
        if not records:
            return
        statement = self._upsert()
        try:
            with self._engine.begin() as connection:
                for start in range(0, len(records), _CHUNK):
                    rows = [_row(r) for r in records[start : start + _CHUNK]]
                    connection.execute(statement, rows)
        except SQLAlchemyError as exc:
            raise StateError(f"cannot store {len(records)} alert records: {_first(exc)}") from exc

    def records(self, query: AlertQuery) -> list[AlertRecord]:
        """Stored records matching ``query``, latest start first (for the API)."""
        statement = select(_TABLE)
        if query.active is not None:
            column = _TABLE.c.resolved_at
            statement = statement.where(column.is_(None) if query.active else column.isnot(None))
        for name in ("station_id", "alertname", "severity"):
            value = getattr(query, name)
            if value is not None:
                statement = statement.where(_TABLE.c[name] == value)
        if query.until is not None:
            statement = statement.where(_TABLE.c.starts_at < query.until)
        if query.since is not None:
            statement = statement.where(
                or_(_TABLE.c.resolved_at.is_(None), _TABLE.c.resolved_at >= query.since)
            )
        statement = statement.order_by(_TABLE.c.starts_at.desc()).limit(query.limit)
        return list(self._select(statement, "query"))

    def _select(self, statement: Select[Any], what: str) -> Iterator[AlertRecord]:
        try:
            with self._engine.connect() as connection:
                rows = connection.execute(statement).mappings().all()
        except SQLAlchemyError as exc:
            raise StateError(f"cannot {what} alert records: {_first(exc)}") from exc
        for row in rows:
            yield AlertRecord(
                row["fingerprint"],
                row["labels"],
                row["annotations"],
                _utc(row["starts_at"]),
                _utc(row["ends_at"]),
                _utc_or_none(row["last_sent_at"]),
                _utc_or_none(row["resolved_at"]),
                _utc(row["updated_at"]),
            )

    def _upsert(self) -> Any:
        statement = dialect_insert(self._engine.dialect.name, _TABLE, "alert state")
        return statement.on_conflict_do_update(
            index_elements=[_TABLE.c.fingerprint],
            set_={name: statement.excluded[name] for name in _COLUMNS},
        )


def _row(record: AlertRecord) -> dict[str, Any]:
    labels = record.labels
    return {
        "fingerprint": record.fingerprint,
        "alertname": labels.get("alertname", ""),
        "severity": labels.get("severity", ""),
        "station_id": labels.get("station_id"),
        "labels": dict(labels),
        "annotations": dict(record.annotations),
        "starts_at": record.starts_at,
        "ends_at": record.ends_at,
        "last_sent_at": record.last_sent_at,
        "resolved_at": record.resolved_at,
        "updated_at": record.updated_at,
    }


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every one stored here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else _utc(moment)


def _first(exc: SQLAlchemyError) -> str:
    """The error's first line, without the SQL and parameters SQLAlchemy appends."""
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).splitlines()[0]
