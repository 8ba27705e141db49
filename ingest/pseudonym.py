"""Id-tag pseudonymization: a keyed HMAC-SHA256, so the clear tag is never stored.

The same card always maps to the same pseudonym (billing and ``concurrent_id_tag`` work per
pseudonym), nobody without the key can compute it from a card number, and rotating the key
severs the link. OCPP says id tags are case-insensitive, so they are compared in upper case.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from chargewatch.errors import ConfigError
from chargewatch.settings import Settings

logger = logging.getLogger(__name__)

_MIN_KEY_BYTES = 16
# 128 bits of the HMAC: collisions are out of reach for any fleet, and the field stays short.
_PSEUDONYM_HEX_CHARS = 32


class Pseudonymizer:
    """Maps a clear id tag to its pseudonym: ``Pseudonymizer(key)("04A1B2C3")``."""

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ConfigError(f"the pseudonym key must be at least {_MIN_KEY_BYTES} bytes long")
        self._key = key

    def __call__(self, id_tag: str) -> str:
        normalized = id_tag.strip().upper().encode("utf-8")
        digest = hmac.new(self._key, normalized, hashlib.sha256).hexdigest()
        return digest[:_PSEUDONYM_HEX_CHARS]

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymizer(key=***)"


def load_pseudonymizer(settings: Settings, *, create_key: bool = True) -> Pseudonymizer:
    """The pseudonymizer of ``settings``: its key, or the one kept in the data directory.

    When neither exists, a random key is created in ``settings.pseudonym_key_file`` with mode
    0600. Losing that file means new pseudonyms for everyone, so back it up with the data.

    With ``create_key=False`` (a job whose pseudonyms never leave the process, like
    ``detect --input``) nothing is written: without a key, a random one serves this run only.
    """
    if settings.pseudonym_key is not None:
        return Pseudonymizer(settings.pseudonym_key.get_secret_value().encode("utf-8"))
    path = settings.pseudonym_key_file
    if create_key:
        return Pseudonymizer(_key_from_file(path))
    try:
        return Pseudonymizer(_read_key(path))
    except FileNotFoundError:
        logger.info("no pseudonym key in %s; using a random key for this run", path)
        return Pseudonymizer(secrets.token_bytes(32))


def existing_pseudonymizer(settings: Settings) -> Pseudonymizer:
    """The pseudonymizer of the service's key, never a new one: ``ConfigError`` when there is
    no key (a pseudonym made with any other key would match nobody's)."""
    if settings.pseudonym_key is not None:
        return Pseudonymizer(settings.pseudonym_key.get_secret_value().encode("utf-8"))
    path = settings.pseudonym_key_file
    try:
        return Pseudonymizer(_read_key(path))
    except FileNotFoundError:
        raise ConfigError(
            f"no pseudonym key: CHARGEWATCH_PSEUDONYM_KEY is unset and {path} does not exist; "
            "a pseudonym made with another key would be wrong (set CHARGEWATCH_DATA_DIR or "
            "CHARGEWATCH_PSEUDONYM_KEY as the service has them)"
        ) from None


def _key_from_file(path: Path) -> bytes:
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once must not each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    except OSError as exc:
        raise ConfigError(f"cannot create the pseudonym key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    logger.info("created a new pseudonym key in %s", path)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read the pseudonym key file {path}: {exc.strerror}") from exc
    if path.stat().st_mode & 0o077:
        raise ConfigError(
            f"the pseudonym key file {path} is readable by others; run: chmod 600 {path}"
        )
    if len(text) < 2 * _MIN_KEY_BYTES:
        raise ConfigError(f"the pseudonym key file {path} holds a key that is too short")
    return text.encode("utf-8")
