"""Id tags become keyed pseudonyms; the key is kept private."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chargewatch.errors import ConfigError
from chargewatch.settings import Settings
from ingest.pseudonym import Pseudonymizer, load_pseudonymizer


def test_same_card_same_pseudonym_case_insensitive_as_ocpp_says() -> None:
    pseudonymize = Pseudonymizer(b"k" * 32)
    assert pseudonymize("04a1b2c3") == pseudonymize(" 04A1B2C3 ")
    assert pseudonymize("04A1B2C3") != pseudonymize("04A1B2C4")
    assert len(pseudonymize("04A1B2C3")) == 32
    assert "04A1B2C3" not in pseudonymize("04A1B2C3")


def test_another_key_gives_other_pseudonyms() -> None:
    assert Pseudonymizer(b"a" * 32)("TAG") != Pseudonymizer(b"b" * 32)("TAG")


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        Pseudonymizer(b"short")


def test_generated_key_is_owner_only_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = load_pseudonymizer(settings)
    key_file = settings.pseudonym_key_file
    assert key_file == tmp_path / "data" / "pseudonym.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_pseudonymizer(settings)("TAG") == first("TAG")
    assert "key" not in repr(first).replace("key=***", "")


def test_configured_key_wins_and_no_file_is_written(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, pseudonym_key="x" * 40)  # type: ignore[arg-type]
    assert load_pseudonymizer(settings)("TAG") == Pseudonymizer(b"x" * 40)("TAG")
    assert not settings.pseudonym_key_file.exists()


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.pseudonym_key_file.write_text("ab" * 32)
    os.chmod(settings.pseudonym_key_file, 0o644)
    for create_key in (True, False):
        with pytest.raises(ConfigError, match="chmod 600"):
            load_pseudonymizer(settings, create_key=create_key)


def test_without_create_key_an_existing_key_file_is_used(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    kept = load_pseudonymizer(settings)
    assert load_pseudonymizer(settings, create_key=False)("TAG") == kept("TAG")


def test_without_create_key_and_no_key_nothing_is_written(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    pseudonymize = load_pseudonymizer(settings, create_key=False)
    assert pseudonymize("04a1b2c3") == pseudonymize("04A1B2C3")  # one key for the whole run
    assert pseudonymize("TAG") != load_pseudonymizer(settings, create_key=False)("TAG")
    assert not (tmp_path / "data").exists()
