"""Settings: defaults, derived paths, precise errors naming the variable, the gzip choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargewatch.errors import ConfigError
from chargewatch.influx import InfluxClient
from chargewatch.settings import Settings, load_settings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("URL", "DATABASE", "USERNAME", "PASSWORD"):
        monkeypatch.delenv(f"CHARGEWATCH_INFLUX_{name}", raising=False)
    monkeypatch.delenv("CHARGEWATCH_DATA_DIR", raising=False)
    settings = load_settings()
    assert settings.influx_url == "http://127.0.0.1:8086"
    assert settings.influx_database == "chargewatch"
    assert str(settings.data_dir) == "var"


@pytest.mark.parametrize(
    ("name", "relative"),
    [
        ("spool_dir", "spool"),
        ("quarantine_dir", "spool/quarantine"),
        ("state_db_file", "state.db"),
        ("pseudonym_key_file", "pseudonym.key"),
        ("influxdb_dir", "influxdb"),
        ("models_dir", "models"),
        ("lock_file", "serve.lock"),
    ],
)
def test_every_path_lies_in_the_data_directory(tmp_path: Path, name: str, relative: str) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert getattr(settings, name) == tmp_path / "data" / relative
    assert not (tmp_path / "data").exists()  # naming a path creates nothing


def test_the_state_database_is_sqlite_in_the_data_directory_unless_a_url_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    local = Settings(data_dir=Path("data"), state_url=None)
    assert local.state_db_url == f"sqlite:///{tmp_path / 'data' / 'state.db'}"  # absolute
    shared = Settings(data_dir=Path("data"), state_url="postgresql+psycopg://db.example/cw")
    assert shared.state_db_url == "postgresql+psycopg://db.example/cw"


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        (
            "CHARGEWATCH_INFLUX_URL",
            "influx:8086",
            "CHARGEWATCH_INFLUX_URL: Value error, must start",
        ),
        ("CHARGEWATCH_INFLUX_BATCH_LINES", "0", "CHARGEWATCH_INFLUX_BATCH_LINES"),
        ("CHARGEWATCH_INFLUX_GZIP", "sometimes", "CHARGEWATCH_INFLUX_GZIP"),
        ("CHARGEWATCH_INFLUX_DATABASE", " ", "CHARGEWATCH_INFLUX_DATABASE"),
    ],
)
def test_a_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, words: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert words in str(caught.value)


def test_the_password_never_shows() -> None:
    settings = Settings(influx_password="hunter2")  # type: ignore[arg-type]
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("url", "setting", "gzip"),
    [
        ("http://127.0.0.1:8086", None, False),
        ("http://localhost:8086", None, False),
        ("http://[::1]:8086", None, False),
        ("https://influx.example.net", None, True),
        ("http://127.0.0.1:8086", True, True),
        ("https://influx.example.net", False, False),
    ],
)
def test_gzip_is_on_except_on_loopback_unless_set(
    url: str, setting: bool | None, gzip: bool
) -> None:
    settings = Settings(influx_url=url, influx_gzip=setting)
    with InfluxClient.from_settings(settings) as client:
        assert client.gzip is gzip
