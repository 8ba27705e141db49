"""Shared fixtures: a private, real InfluxDB for the whole session, and a fresh database per test.

Nothing here mocks InfluxDB: the integration tests talk to a real ``influxd`` (Debian's 1.6.7 in
development and CI), started on a free loopback port with its files in a temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from alerts.server import LocalAlertmanager
from chargewatch.influx import InfluxClient, LocalInfluxd, quote_ident
from chargewatch.influx.server import free_port
from chargewatch.settings import Settings

__all__ = [  # for the test modules
    "ADMIN",
    "ADMIN_PASSWORD",
    "POSTGRES_ADMIN_URL",
    "free_port",
    "postgres_database",
    "unique_database",
]

ADMIN, ADMIN_PASSWORD = "admin", "s3cret'pass\"word"


def unique_database() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


# The PostgreSQL this machine and CI run (trust auth), for the state database's shared path.
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A new database on the PostgreSQL of this machine, its URL; dropped afterwards. Skips
    the test when there is no PostgreSQL, unless CI is set (CI has one: a failure there)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError:
        admin.dispose()
        if os.environ.get("CI"):
            raise
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:  # FORCE: a killed process may leave a session
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


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


@dataclass(frozen=True, slots=True)
class JudgedFleet:
    """A simulated fleet in InfluxDB, judged by the detection job's code: readings, sessions,
    statuses, then profiles, flags, usage pieces and the session catalogue (in the state database
    of ``settings.data_dir``). ``station_id`` has sessions, a flagged ``session_id`` reporting
    its state of charge (a stall when the fleet has one with SoC) and one fault
    (``GroundFailure`` on connector 1, added after detection)."""

    settings: Settings
    since_ns: int
    until_ns: int
    station_id: str
    session_id: str


JUDGED_FLEET_START = datetime(2026, 11, 23, 8, tzinfo=UTC)
JUDGED_FLEET_HOURS = 8


@pytest.fixture(scope="session")
def judged_fleet(
    influxd: LocalInfluxd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JudgedFleet]:
    """10 stations x 8 hours (seed 3, half the sessions with an anomaly), ingested and judged
    in a database of its own, dropped at the end. Read-only for the tests that use it."""
    from analytics.window import detect_window
    from chargewatch.events import EventDecoder
    from chargewatch.influx import BatchWriter
    from chargewatch.state import StateStore
    from ingest.files import ingest_stream
    from ingest.pseudonym import Pseudonymizer
    from simulator import SimulationConfig, simulate

    folder = tmp_path_factory.mktemp("judged-fleet")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        influx_url=influxd.url,
        influx_database=unique_database(),
        data_dir=folder / "var",
        detect_interval_s=0,
    )
    decoder = EventDecoder(Pseudonymizer(b"judged-fleet-key" * 2))
    since = JUDGED_FLEET_START
    until = since + timedelta(hours=JUDGED_FLEET_HOURS)
    since_ns, until_ns = (int(t.timestamp()) * 1_000_000_000 for t in (since, until))

    def ingest(client: InfluxClient, path: Path) -> None:
        with path.open("rb") as stream, BatchWriter(client) as writer:
            rejected: list[object] = []
            ingest_stream(stream, decoder=decoder, sink=writer, on_reject=rejected.append)
        assert not rejected, rejected[:3]

    events = folder / "events.jsonl"
    config = SimulationConfig(
        stations=10, hours=JUDGED_FLEET_HOURS, seed=3, start=since, anomaly_rate=0.5
    )
    simulate(config, events, folder / "labels.jsonl")
    settings.data_dir.mkdir(parents=True)
    client = InfluxClient(url=influxd.url, database=settings.influx_database)
    with client:
        client.create_database()
        try:
            ingest(client, events)
            state = StateStore(settings.state_db_url)
            try:
                flags, _report = detect_window(client, since_ns, until_ns, catalog=state)
            finally:
                state.close()
            # a flagged session that reports its state of charge (a DC one, for the panels
            # that plot SoC and taper), a stall when one does
            with_soc = {
                str(event["session_id"])
                for line in events.read_bytes().splitlines()
                if (event := json.loads(line)).get("soc_pct") is not None
                and event.get("session_id") is not None
            }
            candidates = [f for f in flags if str(f.session_id) in with_soc]
            stall = min(candidates, key=lambda f: (f.kind != "stall", f.start_ns))
            fault_at = since + timedelta(hours=7)
            faults = folder / "fault.jsonl"
            faults.write_text(
                "\n".join(
                    json.dumps(
                        {
                            "type": "status",
                            "ts": (fault_at + timedelta(minutes=minutes)).isoformat(),
                            "station_id": stall.station_id,
                            "connector_id": 1,
                            "status": status,
                            "error_code": code,
                            "vendor_error_code": "E-4711",
                            "info": "residual current detected",
                        }
                    )
                    for minutes, status, code in (
                        (0, "Faulted", "GroundFailure"),
                        (10, "Available", "NoError"),
                    )
                )
                + "\n"
            )
            ingest(client, faults)
            yield JudgedFleet(
                settings=settings,
                since_ns=since_ns,
                until_ns=until_ns,
                station_id=stall.station_id,
                session_id=str(stall.session_id),
            )
        finally:
            client.query(f"DROP DATABASE {quote_ident(client.database)}")
