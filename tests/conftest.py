"""Shared fixtures: a private, real InfluxDB for the whole session, and a fresh database per test.

Nothing here mocks InfluxDB: the integration tests talk to a real ``influxd`` (Debian's 1.6.7 in
development and CI), started on a free loopback port with its files in a temporary folder.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from alerts.server import LocalAlertmanager
from chargewatch.influx import InfluxClient, LocalInfluxd, quote_ident
from chargewatch.influx.server import free_port

__all__ = ["ADMIN", "ADMIN_PASSWORD", "free_port", "unique_database"]  # for the test modules

ADMIN, ADMIN_PASSWORD = "admin", "s3cret'pass\"word"


def unique_database() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxd]:
    """A private influxd for the test session, stopped at its end."""
    server = LocalInfluxd(data_dir=tmp_path_factory.mktemp("influxd"), port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def influxd_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxd]:
    """A second private influxd that requires credentials (user ADMIN, ADMIN_PASSWORD)."""
    server = LocalInfluxd(
        data_dir=tmp_path_factory.mktemp("influxd-auth"), port=free_port(), auth_enabled=True
    )
    server.start()
    try:
        server.create_admin_user(ADMIN, ADMIN_PASSWORD)
        server.create_admin_user(ADMIN, ADMIN_PASSWORD)  # idempotent, now with credentials
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAlertmanager]:
    """A private Alertmanager for the test session (Debian's, installed on first use), with a
    configuration that notifies nobody; stopped at its end. Tests that need a receiver or a
    restart start their own ``LocalAlertmanager``."""
    server = LocalAlertmanager(data_dir=tmp_path_factory.mktemp("alertmanager"), port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influx(influxd: LocalInfluxd) -> Iterator[InfluxClient]:
    """A client on a fresh, uniquely named database, dropped after the test."""
    client = InfluxClient(url=influxd.url, database=unique_database())
    with client:
        client.create_database()
        try:
            yield client
        finally:
            client.query(f"DROP DATABASE {quote_ident(client.database)}")
