"""Leases in the state database: which service instance holds which share of common work.

Several ``serve`` instances on one PostgreSQL share the detection job's station partitions
(DESIGN.md, Growing past one machine). A lease is a row of table ``leases``: a name (for
example ``detect:p07/16``), the instance holding it and when it expires (UTC ns, by the holder's
clock). Its holder renews it; once expired it is anyone's. Two instances never both hold one:

- taking is a single conditional upsert, ``INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE
  the row expired or is the taker's own``. PostgreSQL locks the conflicting row and evaluates the
  condition on its latest version (an atomic insert-or-update, whatever the isolation level);
  SQLite runs one writer at a time. Of two instances racing for an expired lease, the second
  finds it unexpired and held by the first, and gets nothing back (``RETURNING`` is empty);
- renewing and releasing touch only rows whose holder is the caller.

Time is always passed in (``now_ns``), never read here: the tests run on virtual time, and the
job passes its run's clock. Instances compare expiry times written by each other's clocks, so
those clocks must agree to well within a lease (NTP keeps them within milliseconds; a lease
lasts tens of seconds).

``PartitionShare`` builds on the leases: an instance's fair share of ``count`` partitions, taken
over from dead instances once their leases expire, given back when more instances come.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import threading
import weakref
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import BigInteger, Engine, String, Table, delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from chargewatch.errors import ChargewatchError
from chargewatch.state import Base, StateError, StateStore, dialect_insert

__all__ = [
    "LeaseBook",
    "LeaseRecord",
    "LeaseView",
    "PartitionCountError",
    "PartitionShare",
    "new_instance_id",
]

MAX_NAME = 200
MAX_HOLDER = 128


class LeaseRecord(Base):
    """One lease: held by ``holder`` while ``expires_ns`` is later than now."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(MAX_NAME), primary_key=True)
    holder: Mapped[str] = mapped_column(String(MAX_HOLDER))
    expires_ns: Mapped[int] = mapped_column(BigInteger)


_TABLE = cast(Table, LeaseRecord.__table__)
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()
_ready_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class LeaseView:
    """A lease as read: its name, holder and expiry (UTC ns)."""

    name: str
    holder: str
    expires_ns: int


class PartitionCountError(ChargewatchError):
    """Another live instance splits the work into a different number of partitions."""


def new_instance_id() -> str:
    """A name for this process among the instances: host, process id and a random suffix, so a
    restarted process (in a container, often pid 1 on the same host name) is a new holder and
    never renews a lease its dead predecessor held by mistake."""
    host = socket.gethostname()[:80] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class LeaseBook:
    """The leases of one holder (this instance) in the state database."""

    def __init__(self, store: StateStore, holder: str, *, ttl_ns: int) -> None:
        if not holder or len(holder) > MAX_HOLDER:
            raise ValueError(f"lease holder must be 1 to {MAX_HOLDER} characters: {holder!r}")
        if ttl_ns <= 0:
            raise ValueError(f"a lease must last a positive time, not {ttl_ns} ns")
        self.store = store
        self.holder = holder
        self.ttl_ns = ttl_ns

    def take(self, names: Sequence[str], now_ns: int) -> list[str]:
        """Take (or renew) each of ``names`` that is free, expired or already ours, until
        ``now_ns + ttl``; the names now held, in the order given."""
        for name in names:
            _check_name(name)
        engine = _engine(self.store)
        expires = now_ns + self.ttl_ns
        held: set[str] = set()
        try:
            with engine.begin() as connection:
                statement = _take(connection.dialect.name, self.holder, now_ns)
                # in name order: two instances taking several at once lock rows in one order,
                # so neither waits for a row the other holds while holding one it waits for
                for name in sorted(set(names)):
                    row = {"name": name, "holder": self.holder, "expires_ns": expires}
                    if connection.execute(statement, row).first() is not None:
                        held.add(name)
        except SQLAlchemyError as exc:
            raise StateError(f"cannot take leases {_listed(names)}: {_first(exc)}") from exc
        return [name for name in names if name in held]

    def renew(self, names: Sequence[str], now_ns: int) -> list[str]:
        """Extend to ``now_ns + ttl`` those of ``names`` still held by us (expired ones too,
        unless someone took them meanwhile); the names renewed, in the order given."""
        if not names:
            return []
        c = _TABLE.c
        statement = (
            update(_TABLE)
            .where(c.name.in_(list(names)), c.holder == self.holder)
            .values(expires_ns=now_ns + self.ttl_ns)
            .returning(c.name)
        )
        try:
            with _engine(self.store).begin() as connection:
                renewed = {str(name) for name in connection.execute(statement).scalars()}
        except SQLAlchemyError as exc:
            raise StateError(f"cannot renew leases {_listed(names)}: {_first(exc)}") from exc
        return [name for name in names if name in renewed]

    def release(self, names: Sequence[str]) -> None:
        """Give back those of ``names`` we hold: free for anyone at once."""
        if not names:
            return
        c = _TABLE.c
        statement = delete(_TABLE).where(c.name.in_(list(names)), c.holder == self.holder)
        try:
            with _engine(self.store).begin() as connection:
                connection.execute(statement)
        except SQLAlchemyError as exc:
            raise StateError(f"cannot release leases {_listed(names)}: {_first(exc)}") from exc

    def live(self, prefix: str, now_ns: int) -> list[LeaseView]:
        """The unexpired leases whose name begins with ``prefix``, by name."""
        c = _TABLE.c
        query = (
            select(c.name, c.holder, c.expires_ns)
            .where(c.name.startswith(prefix, autoescape=True), c.expires_ns > now_ns)
            .order_by(c.name)
        )
        try:
            with _engine(self.store).connect() as connection:
                rows = connection.execute(query).all()
        except SQLAlchemyError as exc:
            raise StateError(f"cannot read leases {prefix}*: {_first(exc)}") from exc
        return [LeaseView(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def mine(self, prefix: str) -> list[str]:
        """The names beginning with ``prefix`` whose holder is us, expired or not."""
        c = _TABLE.c
        query = select(c.name).where(
            c.name.startswith(prefix, autoescape=True), c.holder == self.holder
        )
        try:
            with _engine(self.store).connect() as connection:
                return sorted(str(name) for name in connection.execute(query).scalars())
        except SQLAlchemyError as exc:
            raise StateError(f"cannot read leases {prefix}*: {_first(exc)}") from exc


class PartitionShare:
    """This instance's fair share of the ``count`` partitions of ``group`` (``balance``).

    Each instance also holds a presence lease (``<group>:member:<holder>``), so an instance
    that holds no partition yet (just started, while the others hold them all) is counted:
    the live instances are the holders of unexpired leases of the group, and this one. The
    fair share is ``ceil(count / live instances)``, so the shares always cover every
    partition. An instance above it gives back its highest partitions; one below takes free
    or expired ones. Every instance must split the work alike (``count``): a live lease of
    another count is refused with ``PartitionCountError``.
    """

    def __init__(self, book: LeaseBook, group: str, count: int) -> None:
        if count < 1:
            raise ValueError(f"partitions must be at least 1, not {count}")
        self.book = book
        self.group = group
        self.count = count
        self._names = [self.name(i) for i in range(count)]
        self._index = {name: i for i, name in enumerate(self._names)}
        self._member = f"{group}:member:{book.holder}"
        _check_name(self._member)

    def name(self, partition: int) -> str:
        """The lease (and job cursor) name of a partition: ``detect:p07/16``."""
        width = len(str(self.count - 1))
        return f"{self.group}:p{partition:0{max(width, 2)}d}/{self.count}"

    def balance(self, now_ns: int) -> tuple[int, ...]:
        """Renew what we hold, then give back or take partitions to reach our fair share;
        the partitions held after it, ascending."""
        self.book.take([self._member], now_ns)
        ours = [name for name in self.book.mine(f"{self.group}:p") if name in self._index]
        held = self._partitions(self.book.renew(ours, now_ns))
        live = self.book.live(f"{self.group}:", now_ns)
        self._check_counts(live)
        instances = {lease.holder for lease in live} | {self.book.holder}
        share = math.ceil(self.count / len(instances))
        if len(held) > share:
            self.book.release([self._names[i] for i in held[share:]])
            return tuple(held[:share])
        taken = {self._index[v.name] for v in live if v.name in self._index}
        free = [i for i in self._order() if i not in taken]
        for i in free:
            if len(held) >= share:
                break
            if self.book.take([self._names[i]], now_ns):
                held.append(i)
        return tuple(sorted(held))

    def renew(self, partitions: Sequence[int], now_ns: int) -> tuple[int, ...]:
        """Renew ``partitions`` (and our presence) mid-run; those still ours."""
        self.book.renew([self._member], now_ns)
        return tuple(
            self._partitions(self.book.renew([self._names[i] for i in partitions], now_ns))
        )

    def release(self) -> None:
        """Give back every partition and the presence: a clean stop."""
        self.book.release([*self.book.mine(f"{self.group}:p"), self._member])

    def _partitions(self, names: Sequence[str]) -> list[int]:
        return sorted(self._index[name] for name in names if name in self._index)

    def _order(self) -> list[int]:
        """Partitions in the order this instance tries them: from a place of its own, so
        instances starting together mostly ask for different ones."""
        first = zlib.crc32(self.book.holder.encode("utf-8")) % self.count
        return [(first + k) % self.count for k in range(self.count)]

    def _check_counts(self, live: Sequence[LeaseView]) -> None:
        suffix = f"/{self.count}"
        for lease in live:
            tail = lease.name.removeprefix(f"{self.group}:")
            if tail.startswith("p") and not tail.endswith(suffix):
                raise PartitionCountError(
                    f"instance {lease.holder} holds lease {lease.name}, of another number of "
                    f"partitions than this instance's {self.count}: set "
                    "CHARGEWATCH_DETECT_PARTITIONS alike on every instance"
                )


def _take(dialect: str, holder: str, now_ns: int) -> Any:
    """The conditional upsert (module docstring), returning the name when it took."""
    c = _TABLE.c
    statement = dialect_insert(dialect, _TABLE, "leases")
    return statement.on_conflict_do_update(
        index_elements=[c.name],
        set_={"holder": statement.excluded.holder, "expires_ns": statement.excluded.expires_ns},
        where=(c.expires_ns <= now_ns) | (c.holder == holder),
    ).returning(c.name)


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"lease name must be 1 to {MAX_NAME} characters: {name!r}")


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _engine(store: StateStore) -> Engine:
    """The store's engine, with the table created (by another process at the same moment,
    maybe: then the second attempt finds it)."""
    engine = store.engine
    if engine not in _ready:
        with _ready_lock:
            if engine not in _ready:
                try:
                    _TABLE.create(engine, checkfirst=True)
                except SQLAlchemyError:
                    _TABLE.create(engine, checkfirst=True)
                _ready.add(engine)
    return engine


def _first(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).splitlines()[0]
