"""A model version's files: written byte for byte the same from the same content, read safely.

Two formats, neither able to run code when read (never ``pickle``):

- JSON (``.json``): canonical, keys sorted, no spaces, UTF-8, no NaN or infinity (JSON has none);
- NPZ (``.npz``): a zip of ``.npy`` arrays, written here with every entry stored (no
  compression), in name order and stamped 1980-01-01, so the same arrays give the same bytes and
  the same SHA-256. Read with ``allow_pickle=False``; object arrays are refused on both sides.

Every failure is a ``ModelError`` naming the file and the reason.
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from chargewatch.errors import ChargewatchError

__all__ = [
    "ModelError",
    "json_bytes",
    "npz_bytes",
    "read_json",
    "read_npz",
    "sha256_bytes",
    "sha256_file",
]

# The stamp of every zip entry: zip's own epoch, so nothing of the clock reaches the bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# dtypes an artifact may hold: numbers, booleans and fixed-width text. Object arrays would need
# pickle to be read back.
_ALLOWED_KINDS = frozenset("biufU")
# Arrays larger than this are not a detector's learned state (the band is 4 x 33 numbers, the
# ratings one value per station): refused before being read into memory.
MAX_ARRAY_BYTES = 256 * 1024 * 1024


class ModelError(ChargewatchError):
    """A model version or one of its files is unusable: the message names the file and why."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def json_bytes(document: Any, *, name: str = "document") -> bytes:
    """``document`` as canonical JSON (sorted keys, compact, final newline)."""
    _check_finite(document, name)
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS) + b"\n"
    except TypeError as exc:
        raise ModelError(f"{name}: cannot be written as JSON ({exc})") from None


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ModelError(f"{where}: {value} has no JSON form (use null)")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_finite(item, f"{where}[{index}]")


def npz_bytes(arrays: Mapping[str, np.ndarray], *, name: str = "arrays.npz") -> bytes:
    """The arrays as a deterministic NPZ (see the module docstring)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            array = np.ascontiguousarray(arrays[key])
            if array.dtype.kind not in _ALLOWED_KINDS:
                raise ModelError(f"{name}: array {key!r} has dtype {array.dtype}, not storable")
            entry = io.BytesIO()
            np.lib.format.write_array(entry, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, entry.getvalue())
    return buffer.getvalue()


def read_json(path: Path) -> Any:
    """A JSON artifact's content; ``ModelError`` when it cannot be read or parsed."""
    try:
        return orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ModelError(f"{path.name}: cannot be read ({exc.strerror})") from None
    except orjson.JSONDecodeError as exc:
        raise ModelError(f"{path.name}: not valid JSON ({exc.msg})") from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """An NPZ artifact's arrays, read without pickle; a file holding pickled (object) arrays,
    or that is no NPZ at all, is refused with ``ModelError``."""
    if path.stat().st_size > MAX_ARRAY_BYTES:
        raise ModelError(f"{path.name}: {path.stat().st_size} bytes, more than a model holds")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path.name}: not an NPZ archive (a pickle or another format)")
    out: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                out[key] = archive[key]
    except ValueError as exc:  # numpy refuses object arrays without allow_pickle
        raise ModelError(f"{path.name}: refused, it holds pickled objects ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"{path.name}: not a readable NPZ archive ({exc})") from None
    for key, array in out.items():
        if array.dtype.kind not in _ALLOWED_KINDS:
            raise ModelError(f"{path.name}: array {key!r} has dtype {array.dtype}, refused")
    return out
