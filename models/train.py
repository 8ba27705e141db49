"""A trained candidate made into a registered version: fingerprint, files, manifest.

What the detectors learned reaches here as plain artifacts (``Candidate``: NPZ arrays and JSON
documents, each with a line saying what it holds), made by ``analytics.learned`` from fitted
detectors: this package knows nothing of the detectors (it sits below ``analytics``).

The fingerprint is a SHA-256 over the training input: the event file's bytes and the label
file's (``file_fingerprint``), or the assembled history's arrays read from InfluxDB
(``array_fingerprint``); the same data gives the same fingerprint. The artifacts are written
deterministically (``models.artifacts``), so the same data also gives the same artifact hashes;
only the manifest differs, by its version name and time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.artifacts import json_bytes, npz_bytes, sha256_bytes
from models.manifest import FORMAT, SCHEMA_VERSION, library_versions
from models.registry import Registry, VersionInfo

__all__ = [
    "Candidate",
    "array_fingerprint",
    "file_fingerprint",
    "register_candidate",
    "version_name",
]


@dataclass(slots=True)
class Candidate:
    """A trained model before it is registered."""

    arrays: dict[str, dict[str, np.ndarray]]  # file name (.npz) -> arrays by name
    documents: dict[str, Any]  # file name (.json) -> document
    descriptions: dict[str, str]  # file name -> what it holds
    features: list[str]  # what was learned from, in words (per artifact: ``descriptions``)
    training: dict[str, Any]  # input file or window, row counts, the held-out split
    fingerprint: str
    metrics: dict[str, Any] = field(default_factory=dict)
    # per kind: the calibrated threshold, the rule's floor, what it was calibrated on and the
    # false-alarm rate it achieves on the held-out part; the target rate (empty: not calibrated)
    calibration: dict[str, Any] = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        out = {name: npz_bytes(arrays, name=name) for name, arrays in self.arrays.items()}
        out.update({name: json_bytes(doc, name=name) for name, doc in self.documents.items()})
        return out


def file_fingerprint(paths: Iterable[Path | None]) -> str:
    """SHA-256 over the files' bytes, each preceded by its role and length (absent: a mark), so
    moving bytes from one file to the other changes it."""
    digest = hashlib.sha256(b"chargewatch-training-files-v1")
    for index, path in enumerate(paths):
        if path is None:
            digest.update(f"|{index}:none".encode())
            continue
        digest.update(f"|{index}:{path.stat().st_size}:".encode())
        with path.open("rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def array_fingerprint(arrays: Mapping[str, np.ndarray], extra: Iterable[bytes] = ()) -> str:
    """SHA-256 over named arrays (name, dtype, shape and contents; object arrays by each
    element's text), in name order, then ``extra`` (labels' bytes, say)."""
    digest = hashlib.sha256(b"chargewatch-training-arrays-v1")
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        digest.update(f"|{name}:{array.dtype.str}:{array.shape}:".encode())
        if array.dtype.kind == "O":
            for item in array.reshape(-1).tolist():
                digest.update(b"\x00" if item is None else b"\x01" + str(item).encode() + b"\x02")
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    for part in extra:
        digest.update(b"|extra:" + str(len(part)).encode() + b":" + part)
    return digest.hexdigest()


def version_name(created_at: datetime, fingerprint: str) -> str:
    """``YYYYMMDDTHHMMSSZ-<first 8 hex of the fingerprint>``: sorts by time, says the data."""
    return f"{created_at:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}"


def register_candidate(
    registry: Registry, candidate: Candidate, *, created_at: datetime
) -> VersionInfo:
    """Write ``candidate`` as a new version with its manifest, and index it."""
    files = candidate.files()
    version = version_name(created_at, candidate.fingerprint)
    existing = {v.version for v in registry.versions()}
    suffix = 1
    while version in existing:  # two trainings within a second on the same data
        suffix += 1
        version = f"{version_name(created_at, candidate.fingerprint)}.{suffix}"
    manifest = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "version": version,
        "created_at": created_at.isoformat(),
        "training": candidate.training,
        "features": candidate.features,
        "libraries": library_versions(),
        "fingerprint": candidate.fingerprint,
        "metrics": candidate.metrics,
        "calibration": candidate.calibration,
        "artifacts": {
            name: {
                "sha256": sha256_bytes(data),
                "bytes": len(data),
                "holds": candidate.descriptions.get(name, ""),
            }
            for name, data in sorted(files.items())
        },
    }
    return registry.register(manifest, files)
