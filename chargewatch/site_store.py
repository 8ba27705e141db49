"""Station metadata and fleet cards in the state database (``chargewatch.sites`` has the types).

Two tables on ``chargewatch.state``'s metadata, created on first use by this module (a store
opened before it was imported did not create them):

- ``station_sites``: one row per station, its site, coordinates and declared rated power, as
  ``chargewatch stations import`` last gave them (an import replaces a station's row);
- ``fleet_cards``: the pseudonyms marked by ``chargewatch users mark-fleet``.

``load_metadata`` reads both as the ``StationMetadata`` the detection job hands the detectors.
Kept apart from the types so that ``detect --input`` never loads the database library.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import DateTime, Engine, Float, String, Table, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from chargewatch.sites import StationInfo, StationMetadata
from chargewatch.state import Base, StateError, StateStore

__all__ = [
    "FleetCard",
    "StationSite",
    "fleet_cards",
    "load_metadata",
    "mark_fleet",
    "store_stations",
    "unmark_fleet",
]


class StationSite(Base):
    """A station's site, place and declared rating (``chargewatch stations import``)."""

    __tablename__ = "station_sites"
    station_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(128), index=True)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    rated_power_w: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FleetCard(Base):
    """A pseudonym marked as a fleet card: several vehicles use it at once, on purpose."""

    __tablename__ = "fleet_cards"
    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    marked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


_TABLES = [cast(Table, StationSite.__table__), cast(Table, FleetCard.__table__)]
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()
_ready_lock = threading.Lock()


def _engine(store: StateStore) -> Engine:
    """The store's engine, with these tables created on first use (a store opened before this
    module was imported did not create them)."""
    engine = store.engine
    if engine in _ready:
        return engine
    with _ready_lock:
        if engine not in _ready:
            try:
                Base.metadata.create_all(engine, tables=_TABLES)
            except SQLAlchemyError:
                # another process created them at the same moment: they exist now
                Base.metadata.create_all(engine, tables=_TABLES)
            _ready.add(engine)
    return engine


def store_stations(store: StateStore, stations: Iterable[StationInfo]) -> int:
    """Insert or replace each station's row (one transaction: all of them or none)."""
    now = datetime.now(UTC)
    count = 0
    try:
        with Session(_engine(store)) as session, session.begin():
            for info in stations:
                session.merge(
                    StationSite(
                        station_id=info.station_id,
                        site_id=info.site_id,
                        latitude=info.latitude,
                        longitude=info.longitude,
                        rated_power_w=info.rated_power_w,
                        updated_at=now,
                    )
                )
                count += 1
    except SQLAlchemyError as exc:
        raise StateError(f"cannot store the stations: {_first_line(exc)}") from exc
    return count


def mark_fleet(store: StateStore, pseudonym: str) -> bool:
    """Mark a pseudonym as a fleet card; False when it already was."""
    try:
        with Session(_engine(store)) as session, session.begin():
            if session.get(FleetCard, pseudonym) is not None:
                return False
            session.add(FleetCard(pseudonym=pseudonym, marked_at=datetime.now(UTC)))
            return True
    except SQLAlchemyError as exc:
        raise StateError(f"cannot mark the fleet card: {_first_line(exc)}") from exc


def unmark_fleet(store: StateStore, pseudonym: str) -> bool:
    """Remove a fleet-card mark; False when the pseudonym was not marked."""
    try:
        with Session(_engine(store)) as session, session.begin():
            done = session.execute(delete(FleetCard).where(FleetCard.pseudonym == pseudonym))
            return bool(getattr(done, "rowcount", 0))
    except SQLAlchemyError as exc:
        raise StateError(f"cannot unmark the fleet card: {_first_line(exc)}") from exc


def fleet_cards(store: StateStore) -> list[str]:
    """Every pseudonym marked as a fleet card, sorted."""
    try:
        with Session(_engine(store)) as session:
            return sorted(session.execute(select(FleetCard.pseudonym)).scalars())
    except SQLAlchemyError as exc:
        raise StateError(f"cannot read the fleet cards: {_first_line(exc)}") from exc


def load_metadata(store: StateStore) -> StationMetadata:
    """Every imported station and every fleet card, as the detectors take them."""
    try:
        with Session(_engine(store)) as session:
            rows = session.execute(select(StationSite)).scalars().all()
            stations = {
                r.station_id: StationInfo(
                    r.station_id,
                    r.site_id,
                    _finite(r.latitude),
                    _finite(r.longitude),
                    _finite(r.rated_power_w),
                )
                for r in rows
            }
            cards = frozenset(session.execute(select(FleetCard.pseudonym)).scalars())
    except SQLAlchemyError as exc:
        raise StateError(f"cannot read the station metadata: {_first_line(exc)}") from exc
    return StationMetadata(stations, cards)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _first_line(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).splitlines()[0]
