"""The state database: what must survive a restart besides the time series.

SQLAlchemy over SQLite in the data directory by default, or PostgreSQL by URL when several
service instances share it (DESIGN.md, State); ``Settings.state_db_url`` says which. This module
holds the tables the ingest side needs: counters (OCPP transaction ids unique across restarts and
instances), stations (their OCPP Basic-auth password hashes) and API keys (stored hashed, with a
role). Later stages add their own tables to the same metadata.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Engine,
    String,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from chargewatch.errors import ChargewatchError
from chargewatch.roles import Role

TRANSACTION_COUNTER = "ocpp_transaction_id"
_API_KEY_PREFIX = "cw_"
_PBKDF2_ROUNDS = 200_000  # station passwords are chosen by people: slow them down


class StateError(ChargewatchError):
    """The state database could not be opened or used."""


def dialect_insert(dialect: str, table: Any, what: str) -> Any:
    """An INSERT into ``table`` for the state database's dialect: SQLite's or PostgreSQL's, which
    share ``on_conflict_do_update`` / ``on_conflict_do_nothing`` and ``excluded``; ``what``
    names the caller in the error for any other dialect."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise StateError(f"{what} needs SQLite or PostgreSQL, not {dialect}")


class Base(DeclarativeBase):
    pass


class Counter(Base):
    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class StationRecord(Base):
    """A station known to the OCPP endpoint, with its Basic-auth password hash."""

    __tablename__ = "stations"
    station_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    __tablename__ = "api_keys"
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the key's public part
    key_hash: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JobCursor(Base):
    """How far a scheduled job has got (UTC ns), so a restart resumes instead of repeating."""

    __tablename__ = "job_cursors"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value_ns: Mapped[int] = mapped_column(BigInteger)


class AlertState(Base):
    """One alert's lifecycle, by fingerprint (``alerts.lifecycle`` decides, ``alerts.store`` reads
    and writes). A resolved alert keeps its row with ``resolved_at`` set, never deleted; a
    condition that returns later starts a new episode in the same row."""

    __tablename__ = "alert_state"
    fingerprint: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Copies of three labels, so the API can filter without reading JSON.
    alertname: Mapped[str] = mapped_column(String(128), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    station_id: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StateStore:
    """Access to the state database; one per process, shared by threads."""

    def __init__(self, url: str) -> None:
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self._engine: Engine = create_engine(url, pool_pre_ping=True)
            if self._engine.dialect.name == "sqlite":
                event.listen(self._engine, "connect", _sqlite_pragmas)
            Base.metadata.create_all(self._engine)
        except SQLAlchemyError as exc:
            raise StateError(f"cannot open the state database: {_safe(exc)}") from exc

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    # -- counters -------------------------------------------------------------------------------

    def next_value(self, name: str = TRANSACTION_COUNTER) -> int:
        """The next value of a counter, unique across restarts and across instances sharing the
        database (the row update is atomic in SQLite and takes a row lock in PostgreSQL)."""
        for attempt in range(2):
            try:
                with Session(self._engine) as session, session.begin():
                    value = session.execute(
                        update(Counter)
                        .where(Counter.name == name)
                        .values(value=Counter.value + 1)
                        .returning(Counter.value)
                    ).scalar_one_or_none()
                    if value is None:
                        session.add(Counter(name=name, value=1))
                        value = 1
                    return int(value)
            except IntegrityError as exc:
                if attempt:
                    raise StateError(f"cannot advance counter {name}: {_safe(exc)}") from exc
                # Another instance created the counter at the same moment: update it instead.
            except SQLAlchemyError as exc:
                raise StateError(f"cannot advance counter {name}: {_safe(exc)}") from exc
        raise AssertionError("unreachable")

    # -- job cursors ----------------------------------------------------------------------------

    def cursor(self, name: str) -> int | None:
        try:
            with Session(self._engine) as session:
                row = session.get(JobCursor, name)
                return None if row is None else int(row.value_ns)
        except SQLAlchemyError as exc:
            raise StateError(f"cannot read cursor {name}: {_safe(exc)}") from exc

    def set_cursor(self, name: str, value_ns: int) -> None:
        try:
            with Session(self._engine) as session, session.begin():
                session.merge(JobCursor(name=name, value_ns=value_ns))
        except SQLAlchemyError as exc:
            raise StateError(f"cannot store cursor {name}: {_safe(exc)}") from exc

    def set_cursors(self, values: dict[str, int]) -> None:
        """Store several cursors in one transaction: all or none, and one commit (a sync to
        disk) for all of them rather than one each."""
        if not values:
            return
        rows = [{"name": name, "value_ns": value_ns} for name, value_ns in values.items()]
        try:
            with self._engine.begin() as connection:
                # one INSERT ... ON CONFLICT for all (a merge each would read every row first:
                # 16 partitions' cursors cost the job 10 ms a window)
                connection.execute(self._cursor_upsert(), rows)
        except SQLAlchemyError as exc:
            names = ", ".join(sorted(values))
            raise StateError(f"cannot store cursors {names}: {_safe(exc)}") from exc

    def _cursor_upsert(self) -> Any:
        """``INSERT ... ON CONFLICT (name) DO UPDATE`` of job cursors in the dialect at hand."""
        statement = dialect_insert(self._engine.dialect.name, JobCursor, "job cursors")
        return statement.on_conflict_do_update(
            index_elements=["name"], set_={"value_ns": statement.excluded.value_ns}
        )

    # -- stations -------------------------------------------------------------------------------

    def set_station_password(self, station_id: str, password: str) -> None:
        with Session(self._engine) as session, session.begin():
            session.merge(
                StationRecord(
                    station_id=station_id,
                    password_hash=_hash_password(password),
                    created_at=datetime.now(UTC),
                )
            )

    def station_known(self, station_id: str) -> bool:
        with Session(self._engine) as session:
            return session.get(StationRecord, station_id) is not None

    def check_station_password(self, station_id: str, password: str) -> bool:
        """True when the station exists and the password matches (constant-time compare)."""
        with Session(self._engine) as session:
            station = session.get(StationRecord, station_id)
        if station is None:
            _hash_password(password)  # same work either way: no timing hint of existence
            return False
        return _verify_password(password, station.password_hash)

    # -- API keys -------------------------------------------------------------------------------

    def create_api_key(self, role: Role) -> str:
        """A new key, returned once in clear; only its hash is stored."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with Session(self._engine) as session, session.begin():
            session.add(
                ApiKey(
                    key_id=key_id,
                    key_hash=_hash_key(secret),
                    role=role.value,
                    created_at=datetime.now(UTC),
                )
            )
        return f"{_API_KEY_PREFIX}{key_id}_{secret}"

    def role_of(self, key: str) -> Role | None:
        """The role of a valid, unrevoked key; None otherwise."""
        if not key.startswith(_API_KEY_PREFIX) or key.count("_") < 2:
            return None
        key_id, _, secret = key.removeprefix(_API_KEY_PREFIX).partition("_")
        with Session(self._engine) as session:
            row = session.execute(
                select(ApiKey).where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
            ).scalar_one_or_none()
        if row is None or not hmac.compare_digest(row.key_hash, _hash_key(secret)):
            return None
        return Role(row.role)

    def api_keys(self) -> list[ApiKeyInfo]:
        """Every key ever created, oldest first, revoked ones included."""
        try:
            with Session(self._engine) as session:
                rows = session.execute(select(ApiKey).order_by(ApiKey.created_at)).scalars()
                return [_key_info(row) for row in rows]
        except SQLAlchemyError as exc:
            raise StateError(f"cannot read the API keys: {_safe(exc)}") from exc

    def revoke_api_key(self, key_id: str, *, now: datetime) -> ApiKeyInfo | None:
        """Revoke a key: its next request is refused (the role is looked up on each one). The
        row stays, with the time of its first revocation; None when no key has that id."""
        try:
            with Session(self._engine) as session, session.begin():
                row = session.get(ApiKey, key_id)
                if row is None:
                    return None
                if row.revoked_at is None:
                    row.revoked_at = now
                return _key_info(row)
        except SQLAlchemyError as exc:
            raise StateError(f"cannot revoke API key {key_id}: {_safe(exc)}") from exc


def api_key_id(key: str) -> str | None:
    """The public part of a key (``cw_<key_id>_<secret>``: what ``keys list`` shows and rate
    limits count by); None when it does not have that shape."""
    if not key.startswith(_API_KEY_PREFIX) or key.count("_") < 2:
        return None
    return key.removeprefix(_API_KEY_PREFIX).partition("_")[0]


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What may be shown of an API key: never the key, nor its hash."""

    key_id: str  # the key's public part: cw_<key_id>_<secret>
    role: Role
    created_at: datetime
    revoked_at: datetime | None


def _key_info(row: ApiKey) -> ApiKeyInfo:
    revoked = _utc(row.revoked_at) if row.revoked_at is not None else None
    return ApiKeyInfo(row.key_id, Role(row.role), _utc(row.created_at), revoked)


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every one stored here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    # The wait first: switching a new database to WAL takes a lock, and without a busy timeout
    # a connection opened while another thread switches it fails at once ("database is locked").
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.close()


def _hash_key(secret: str) -> str:
    # API keys are 256 random bits: a fast hash is enough, unlike for passwords.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, _PBKDF2_ROUNDS)
    return f"pbkdf2_sha256${_PBKDF2_ROUNDS}${salt.hex()}${digest.hex()}"


def _verify_password(password: str, stored: str) -> bool:
    try:
        _scheme, rounds, salt, digest = stored.split("$")
        again = hashlib.pbkdf2_hmac(
            "sha256", password.encode("utf-8"), bytes.fromhex(salt), int(rounds)
        )
    except ValueError:
        return False
    return hmac.compare_digest(again.hex(), digest)


def _safe(exc: SQLAlchemyError) -> str:
    """The error's first line, without the SQL and parameters SQLAlchemy appends."""
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).splitlines()[0]
