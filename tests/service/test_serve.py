"""`chargewatch serve` as a process: outages, SIGKILL, live OCPP fleets, station auth and TLS.

Everything here is real: the serve process, InfluxDB, the OCPP clients of `simulate --live`.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.influx.server import free_port

WINDOW = "time >= '2000-01-01T00:00:00Z' AND time <= '2100-01-01T00:00:00Z'"


class ServeProcess:
    """One `chargewatch serve` subprocess on a free port, with its own data directory."""

    def __init__(self, data_dir: Path, influx_url: str, database: str, **env: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "CHARGEWATCH_INFLUX_URL": influx_url,
            "CHARGEWATCH_INFLUX_DATABASE": database,
            "CHARGEWATCH_DATA_DIR": str(data_dir),
            "CHARGEWATCH_INFLUX_MAX_RETRIES": "0",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.scheme = "https" if "CHARGEWATCH_TLS_CERTFILE" in env else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "chargewatch", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout.strip()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chargewatch", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", verify=False, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("chargewatch serve did not answer /healthz")

    def kill(self, signum: int = signal.SIGKILL) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(15)
        assert self.process.stderr is not None
        self.process.stderr.close()
        self.process = None
        return code

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/healthz", verify=False, timeout=5).json())


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"serve_{uuid.uuid4().hex[:10]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


def powers(url: str, database: str) -> list[float]:
    with InfluxClient(url=url, database=database) as client:
        series = client.query(f"SELECT power_w FROM reading WHERE {WINDOW}")
    return sorted(series[0].columns["power_w"].tolist()) if series else []


def batch(first: int, count: int) -> bytes:
    return orjson.dumps(
        [
            {
                "type": "reading",
                "ts": "2026-11-24T00:00:00Z",
                "station_id": f"S{i}",
                "connector_id": 1,
                "power_w": float(i),
            }
            for i in range(first, first + count)
        ]
    )


def wait_for(predicate: Any, timeout_s: float = 120) -> None:
    # a bound against hanging, not a speed check: the suite's two cores are often saturated
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def test_sigkill_loses_no_acknowledged_event(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    serve = ServeProcess(tmp_path, influxd.url, database)
    key = serve.cli("keys", "create", "--role", "operator")
    serve.start()
    acknowledged: list[int] = []
    stop = threading.Event()

    def post_until_stopped() -> None:
        first = 0
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=5) as client:
            while not stop.is_set():
                try:
                    answer = client.post(f"{serve.url}/api/v1/events", content=batch(first, 200))
                except httpx.HTTPError:
                    time.sleep(0.05)  # the process is down: try again, same events
                    continue
                if answer.status_code == 200:
                    acknowledged.extend(range(first, first + 200))
                    first += 200

    poster = threading.Thread(target=post_until_stopped)
    poster.start()
    try:
        wait_for(lambda: len(acknowledged) >= 2000)
        serve.kill(signal.SIGKILL)  # in the middle of the stream
        at_kill = len(acknowledged)
        serve.start()  # replays the spool from its cursor
        wait_for(lambda: len(acknowledged) >= at_kill + 2000)
    finally:
        stop.set()
        poster.join(10)
    wait_for(lambda: serve.health()["spool_lines"] == 0)
    stored = set(powers(influxd.url, database))
    assert {float(i) for i in acknowledged} <= stored
    serve.kill(signal.SIGTERM)


def test_influxdb_down_then_back_every_event_arrives_once(database: str, tmp_path: Path) -> None:
    influx = LocalInfluxd(data_dir=tmp_path / "influxd", port=free_port())
    influx.start()
    serve = ServeProcess(tmp_path / "cw", influx.url, database)
    key = serve.cli("keys", "create", "--role", "operator")
    serve.start()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        assert (
            httpx.post(
                f"{serve.url}/api/v1/events", content=batch(0, 100), headers=headers
            ).status_code
            == 200
        )
        wait_for(lambda: serve.health()["spool_lines"] == 0)
        influx.stop()
        for first in range(100, 1000, 100):  # accepted while InfluxDB is down: spooled
            answer = httpx.post(
                f"{serve.url}/api/v1/events", content=batch(first, 100), headers=headers
            )
            assert answer.status_code == 200
        wait_for(lambda: serve.health()["influx_last_error"] is not None)
        assert serve.health()["spool_lines"] > 0
        influx.start()
        wait_for(lambda: serve.health()["spool_lines"] == 0)
        assert powers(influx.url, database) == [float(i) for i in range(1000)]
    finally:
        serve.kill(signal.SIGTERM)
        influx.stop()


def test_a_live_ocpp_fleet_lands_in_influxdb(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    serve = ServeProcess(tmp_path, influxd.url, database)
    viewer = serve.cli("keys", "create", "--role", "viewer")
    serve.start()
    try:
        events, labels = tmp_path / "fleet.jsonl", tmp_path / "labels.jsonl"
        output = serve.cli(
            "simulate",
            "--stations",
            "4",
            "--hours",
            "1",
            "--seed",
            "5",
            "--anomaly-rate",
            "0",
            "--out",
            str(events),
            "--labels",
            str(labels),
            "--live",
            f"ws://127.0.0.1:{serve.port}/ocpp",
            "--speed",
            "3600",
        )
        assert "replayed" in output and "(0 failed)" in output, output
        wait_for(lambda: serve.health()["spool_lines"] == 0)
        sent = [orjson.loads(line) for line in events.read_bytes().splitlines()]
        readings = [e for e in sent if e["type"] == "reading"]
        with InfluxClient(url=influxd.url, database=database) as client:
            stored = client.query(f"SELECT * FROM reading WHERE {WINDOW}")
        assert sum(len(s) for s in stored) == len(readings)
        health = serve.health()  # the scheduled detection job runs inside serve
        assert health["detection_runs"] >= 1 and health["detection_failures"] == 0
        metrics = httpx.get(
            f"{serve.url}/metrics", headers={"Authorization": f"Bearer {viewer}"}
        ).text
        assert 'chargewatch_ocpp_calls_total{action="MeterValues"}' in metrics
        assert 'chargewatch_events_accepted_total{source="ocpp",type="reading"}' in metrics
    finally:
        serve.kill(signal.SIGTERM)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made here (no openssl binary needed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("tls", [False, True], ids=["profile1", "profile2-tls"])
def test_station_auth_refuses_unknown_stations_and_wrong_passwords(
    influxd: LocalInfluxd, database: str, tmp_path: Path, tls_files: tuple[Path, Path], tls: bool
) -> None:
    cert, key = tls_files
    env = {"CHARGEWATCH_OCPP_STATION_AUTH": "true"}
    if tls:
        env |= {"CHARGEWATCH_TLS_CERTFILE": str(cert), "CHARGEWATCH_TLS_KEYFILE": str(key)}
    serve = ServeProcess(tmp_path, influxd.url, database, **env)
    serve.cli("stations", "set-password", "CP-1", stdin="a-long-station-password\n")
    serve.start()
    context = None
    if tls:
        context = ssl.create_default_context(cafile=str(cert))
    base = f"{'wss' if tls else 'ws'}://127.0.0.1:{serve.port}/ocpp"

    async def connect(station: str, password: str | None) -> bool:
        headers = {}
        if password is not None:
            token = base64.b64encode(f"{station}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            async with websockets.connect(
                f"{base}/{station}",
                subprotocols=[Subprotocol("ocpp1.6")],
                additional_headers=headers,
                ssl=context,
                open_timeout=10,
            ) as ws:
                return ws.subprotocol == "ocpp1.6"
        except InvalidStatus:
            return False

    try:
        assert asyncio.run(connect("CP-1", "a-long-station-password"))
        assert not asyncio.run(connect("CP-1", "wrong-password-here"))
        assert not asyncio.run(connect("CP-2", "a-long-station-password"))
        assert not asyncio.run(connect("CP-1", None))
    finally:
        serve.kill(signal.SIGTERM)
