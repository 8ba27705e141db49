"""The model registry: versions as folders in the data directory, their index in the state database.

``settings.models_dir / <version>/`` holds ``manifest.json`` and the artifacts it lists. The
state database holds one row per version (``model_versions``: when it was made, the SHA-256 of
its manifest, its status, when it was last promoted) and the history of promotions
(``model_promotions``), a stack: ``promote`` pushes a version, ``rollback`` withdraws the one in
service and the one promoted before it is in service again (none left: the built-in detectors).

Loading (``load``) trusts nothing on disk: the manifest must have the digest the index recorded
when the version was registered (so a manifest rewritten to match changed artifacts is caught),
its schema and library versions must be ones this process reads, every artifact it lists must
have its SHA-256 and no other file may lie in the folder. Any failure is a ``ModelError`` naming
the file and the reason; nothing of the version is used.
"""

from __future__ import annotations

import os
import shutil
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import BigInteger, Boolean, DateTime, Engine, String, Table, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from chargewatch.state import Base
from models.artifacts import ModelError, json_bytes, read_json, read_npz, sha256_bytes, sha256_file
from models.manifest import VERSION_NAME, check_compatible, check_manifest

__all__ = [
    "MANIFEST",
    "LoadedModel",
    "ModelPromotion",
    "ModelVersionRow",
    "Registry",
    "VersionInfo",
]

MANIFEST = "manifest.json"
REGISTERED = "registered"
IN_SERVICE = "in service"


class ModelVersionRow(Base):
    """One registered model version (its files are in ``models_dir / version``)."""

    __tablename__ = "model_versions"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # "registered" or "in service"
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ModelPromotion(Base):
    """One promotion; the latest not withdrawn is the version in service."""

    __tablename__ = "model_promotions"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    version: Mapped[str] = mapped_column(String(64))
    promoted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)


_TABLES = [cast(Table, ModelVersionRow.__table__), cast(Table, ModelPromotion.__table__)]
_ready: weakref.WeakSet[Engine] = weakref.WeakSet()
_ready_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """A version's row in the index."""

    version: str
    created_at: datetime
    manifest_sha256: str
    status: str
    promoted_at: datetime | None


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A version read and verified: its manifest, and each artifact's content (NPZ: arrays by
    name; JSON: the document)."""

    version: str
    manifest: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]]
    documents: dict[str, Any]


class Registry:
    """Model versions in ``models_dir``, indexed in the state database behind ``engine``."""

    def __init__(self, models_dir: Path, engine: Engine) -> None:
        self.models_dir = models_dir
        self._engine = _ready_engine(engine)

    # -- registering ----------------------------------------------------------------------------

    def register(self, manifest: dict[str, Any], files: dict[str, bytes]) -> VersionInfo:
        """Write a new version's files (checked against ``manifest``) and index it."""
        check_manifest(manifest)
        version = manifest["version"]
        listed = set(manifest["artifacts"])
        if listed != set(files):
            raise ModelError(
                f"{version}: files {sorted(files)} are not those listed {sorted(listed)}"
            )
        for name, data in files.items():
            if sha256_bytes(data) != manifest["artifacts"][name]["sha256"]:
                raise ModelError(f"{version}/{name}: its bytes do not match the manifest's hash")
        manifest_data = json_bytes(manifest, name=MANIFEST)
        folder = self.models_dir / version
        if folder.exists() or self._row(version) is not None:
            raise ModelError(f"version {version} already exists")
        staging = self.models_dir / f".{version}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, data in {**files, MANIFEST: manifest_data}.items():
            _write_synced(staging / name, data)
        os.replace(staging, folder)  # the version appears whole or not at all
        created = datetime.fromisoformat(manifest["created_at"])
        digest = sha256_bytes(manifest_data)
        row = ModelVersionRow(
            version=version,
            created_at=created,
            manifest_sha256=digest,
            status=REGISTERED,
            promoted_at=None,
        )
        try:
            with Session(self._engine) as session, session.begin():
                session.add(row)
        except SQLAlchemyError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise ModelError(f"version {version}: cannot be indexed ({_first(exc)})") from exc
        return VersionInfo(version, created, digest, REGISTERED, None)

    # -- reading the index ----------------------------------------------------------------------

    def versions(self) -> list[VersionInfo]:
        """Every registered version, oldest first."""
        with Session(self._engine) as session:
            rows = session.execute(
                select(ModelVersionRow).order_by(
                    ModelVersionRow.created_at, ModelVersionRow.version
                )
            ).scalars()
            return [_info(row) for row in rows]

    def info(self, version: str) -> VersionInfo:
        row = self._row(version)
        if row is None:
            raise ModelError(f"no model version {version!r} (chargewatch models list)")
        return row

    def promoted(self) -> str | None:
        """The version in service; None for the built-in detectors. One small query: the
        detection job asks at every run."""
        with Session(self._engine) as session:
            current = _current(session)
            return None if current is None else current.version

    # -- promotion ------------------------------------------------------------------------------

    def promote(self, version: str, *, now: datetime) -> VersionInfo:
        """Put ``version`` in service (after loading it: a damaged version is refused here
        already, not only by the service)."""
        self.info(version)
        self.load(version)
        try:
            with Session(self._engine) as session, session.begin():
                last = session.execute(
                    select(ModelPromotion.seq).order_by(ModelPromotion.seq.desc()).limit(1)
                ).scalar_one_or_none()
                session.add(
                    ModelPromotion(
                        seq=(last or 0) + 1, version=version, promoted_at=now, withdrawn=False
                    )
                )
                _set_status(session, version, now)
        except SQLAlchemyError as exc:  # another promotion at the same moment took the seq
            raise ModelError(f"cannot promote {version}, try again: {_first(exc)}") from exc
        return self.info(version)

    def rollback(self, *, now: datetime) -> str | None:
        """Withdraw the version in service; the one promoted before it (if any) is in service
        again. Returns that version, None for the built-in detectors. ``ModelError`` when no
        version is in service."""
        del now  # the withdrawn row keeps its promotion time; nothing new is stamped
        try:
            with Session(self._engine) as session, session.begin():
                current = _current(session)
                if current is None:
                    raise ModelError("no version is in service: nothing to roll back")
                current.withdrawn = True
                session.flush()
                back = _current(session)
                _set_status(session, None if back is None else back.version, None)
                return None if back is None else back.version
        except SQLAlchemyError as exc:
            raise ModelError(f"cannot roll back: {_first(exc)}") from exc

    # -- loading --------------------------------------------------------------------------------

    def load(self, version: str) -> LoadedModel:
        """The version's files, verified (module docstring); ``ModelError`` otherwise."""
        try:
            return self._load(version)
        except OSError as exc:
            raise ModelError(f"{version}: cannot be read ({exc})") from None

    def _load(self, version: str) -> LoadedModel:
        if not VERSION_NAME.fullmatch(version):
            raise ModelError(f"{version!r} is not a version name")
        row = self.info(version)
        folder = self.models_dir / version
        where = f"{version}/{MANIFEST}"
        path = folder / MANIFEST
        if not path.is_file():
            raise ModelError(f"{where}: missing")
        if sha256_file(path) != row.manifest_sha256:
            raise ModelError(f"{where}: changed since it was registered (SHA-256 differs)")
        manifest = check_manifest(read_json(path), where=where)
        check_compatible(manifest, where=where)
        if manifest["version"] != version:
            raise ModelError(f"{where}: names version {manifest['version']!r}, not {version!r}")
        present = {p.name for p in folder.iterdir()} - {MANIFEST}
        foreign = present - set(manifest["artifacts"])
        if foreign:
            raise ModelError(f"{version}/{sorted(foreign)[0]}: not listed in the manifest")
        arrays: dict[str, dict[str, np.ndarray]] = {}
        documents: dict[str, Any] = {}
        for name, entry in manifest["artifacts"].items():
            file = folder / name
            if not file.is_file():
                raise ModelError(f"{version}/{name}: missing")
            if sha256_file(file) != entry["sha256"]:
                raise ModelError(f"{version}/{name}: SHA-256 differs from the manifest's")
            if name.endswith(".npz"):
                arrays[name] = read_npz(file)
            else:
                documents[name] = read_json(file)
        return LoadedModel(version, manifest, arrays, documents)

    def manifest(self, version: str) -> dict[str, Any]:
        """The version's manifest as registered (checked against the index's digest)."""
        self.info(version)
        path = self.models_dir / version / MANIFEST
        if not path.is_file() or sha256_file(path) != self.info(version).manifest_sha256:
            raise ModelError(f"{version}/{MANIFEST}: missing or changed since it was registered")
        return check_manifest(read_json(path), where=f"{version}/{MANIFEST}")

    def _row(self, version: str) -> VersionInfo | None:
        with Session(self._engine) as session:
            row = session.get(ModelVersionRow, version)
            return None if row is None else _info(row)


def _current(session: Session) -> ModelPromotion | None:
    return session.execute(
        select(ModelPromotion)
        .where(ModelPromotion.withdrawn.is_(False))
        .order_by(ModelPromotion.seq.desc())
        .limit(1)
    ).scalar_one_or_none()


def _set_status(session: Session, version: str | None, now: datetime | None) -> None:
    """Mark ``version`` in service (its promotion time ``now`` when given), every other one
    registered."""
    for row in session.execute(select(ModelVersionRow)).scalars():
        row.status = IN_SERVICE if row.version == version else REGISTERED
        if row.version == version and now is not None:
            row.promoted_at = now


def _info(row: ModelVersionRow) -> VersionInfo:
    return VersionInfo(
        row.version,
        _utc(row.created_at),
        row.manifest_sha256,
        row.status,
        None if row.promoted_at is None else _utc(row.promoted_at),
    )


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every one stored here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def _ready_engine(engine: Engine) -> Engine:
    """The registry's tables exist (created on first use, like ``analytics.usage_table``)."""
    if engine not in _ready:
        with _ready_lock:
            if engine not in _ready:
                for table in _TABLES:
                    try:
                        table.create(engine, checkfirst=True)
                    except SQLAlchemyError:
                        table.create(engine, checkfirst=True)  # another process made it just now
                _ready.add(engine)
    return engine


def _first(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).splitlines()[0]
