"""A model version's manifest: what it is, what it was trained on, and the hash of every file.

The manifest (``manifest.json`` in the version's folder) is the only file read before any
artifact: it says which files belong to the version and their SHA-256, so an artifact changed
by a single byte, added or swapped is refused (``models.registry``). Its shape is checked field
by field (``check_manifest``); a manifest of another schema, of another package, or written by
a numpy whose file format this one may not read, is refused with the reason.
"""

from __future__ import annotations

import platform
import re
from datetime import datetime
from typing import Any

import numpy as np

import chargewatch
from models.artifacts import ModelError

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "check_compatible",
    "check_manifest",
    "library_versions",
]

# What a manifest says it is: a file of another tool with a "version" key is not one of ours.
FORMAT = "chargewatch-model"
# Bumped when the manifest's or the artifacts' layout changes; a service reads only its own.
SCHEMA_VERSION = 1
# A version's name: what ``train`` makes (``YYYYMMDDTHHMMSSZ-<8 hex of the fingerprint>``) or
# any short name of letters, digits, dots, dashes and underscores; never a path.
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ARTIFACT_NAME = re.compile(r"[a-z0-9_]{1,64}\.(json|npz)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REQUIRED = {
    "format": str,
    "schema_version": int,
    "version": str,
    "created_at": str,
    "training": dict,
    "libraries": dict,
    "fingerprint": str,
    "artifacts": dict,
    "metrics": dict,
}


def library_versions() -> dict[str, str]:
    """The versions that made (or would read) a model: numpy, python, chargewatch."""
    return {
        "chargewatch": chargewatch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def check_manifest(manifest: Any, *, where: str = "manifest.json") -> dict[str, Any]:
    """``manifest`` as a checked dict; ``ModelError`` names the field and the reason."""
    if not isinstance(manifest, dict):
        raise ModelError(f"{where}: must be a JSON object")
    for key, kind in _REQUIRED.items():
        if key not in manifest:
            raise ModelError(f"{where}: field {key!r} is missing")
        value = manifest[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ModelError(f"{where}: field {key!r} must be a {kind.__name__}")
    if manifest["format"] != FORMAT:
        raise ModelError(f"{where}: field 'format' is {manifest['format']!r}, not {FORMAT!r}")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise ModelError(
            f"{where}: schema_version {manifest['schema_version']} is not the one this "
            f"chargewatch reads ({SCHEMA_VERSION})"
        )
    try:
        created = datetime.fromisoformat(manifest["created_at"])
    except ValueError:
        created = None
    if created is None or created.tzinfo is None:
        raise ModelError(f"{where}: field 'created_at' must be an ISO 8601 time with a zone")
    if not VERSION_NAME.fullmatch(manifest["version"]):
        raise ModelError(f"{where}: field 'version' {manifest['version']!r} is not a valid name")
    if not _SHA256.fullmatch(manifest["fingerprint"]):
        raise ModelError(f"{where}: field 'fingerprint' must be 64 hex digits (SHA-256)")
    _check_artifacts(manifest["artifacts"], where)
    _check_calibration(manifest.get("calibration"), where)
    return manifest


def _check_calibration(calibration: Any, where: str) -> None:
    """Optional (versions made before calibration have none): an object whose ``kinds`` each
    name a numeric threshold; what scores is the ``thresholds.json`` artifact, checked on
    loading (``analytics.learned``), this is the record of how it was made."""
    if calibration is None:
        return
    if not isinstance(calibration, dict):
        raise ModelError(f"{where}: field 'calibration' must be an object")
    kinds = calibration.get("kinds", {})
    if not isinstance(kinds, dict):
        raise ModelError(f"{where}: calibration.kinds must be an object")
    for kind, entry in kinds.items():
        value = entry.get("threshold") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelError(f"{where}: calibration.kinds.{kind}.threshold must be a number")


def _check_artifacts(artifacts: dict[str, Any], where: str) -> None:
    if not artifacts:
        raise ModelError(f"{where}: field 'artifacts' lists no file")
    for name, entry in artifacts.items():
        if not _ARTIFACT_NAME.fullmatch(name):
            raise ModelError(f"{where}: artifact name {name!r} is not a plain .json/.npz name")
        if not isinstance(entry, dict) or not _SHA256.fullmatch(str(entry.get("sha256", ""))):
            raise ModelError(f"{where}: artifacts.{name}.sha256 must be 64 hex digits")


def check_compatible(manifest: dict[str, Any], *, where: str = "manifest.json") -> None:
    """Refuse a manifest written by libraries this process may not read it with.

    numpy: NPZ files are numpy's ``.npy`` format, which a numpy of an older major version may
    not read (2.x writes what 1.x reads, not always the other way round): the same major
    version or an older one is required. chargewatch: a model is made by a detector code of one
    major version; another major version's detectors may bin differently.
    """
    libraries = manifest["libraries"]
    mine = library_versions()
    for name in ("numpy", "chargewatch"):
        theirs = libraries.get(name)
        if not isinstance(theirs, str) or not theirs[:1].isdigit():
            raise ModelError(f"{where}: libraries.{name} is missing or not a version")
        if _major(theirs) > _major(mine[name]):
            raise ModelError(
                f"{where}: written with {name} {theirs}, newer than this {name} {mine[name]}"
            )
    if _major(libraries["chargewatch"]) != _major(mine["chargewatch"]):
        raise ModelError(
            f"{where}: made by chargewatch {libraries['chargewatch']}, this is "
            f"{mine['chargewatch']} (another major version)"
        )


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0
