"""One station or client must not stall or exhaust `chargewatch serve` (issue 9, findings 4-6, 11).

Each attack runs against a real `serve` process while an honest station, connected before it
begins, sends a Heartbeat every 20 ms from its own thread and keeps its worst round trip: it must
stay under a second.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as connect_sync
from websockets.typing import Subprotocol

from chargewatch.influx import InfluxClient, LocalInfluxd

from .test_serve import ServeProcess

logger = logging.getLogger(__name__)  # the figures: pytest --log-cli-level=INFO

T = "2026-11-24T08:15:00Z"
WORST_RTT_S = 1.0
PASSWORD = "a-long-station-password"
OCPP16 = Subprotocol("ocpp1.6")


class LoggedServe(ServeProcess):
    """`ServeProcess` with its log in a file (a pipe nobody reads would block a chatty server)."""

    def start(self) -> None:
        self.log = self.data_dir / "serve.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chargewatch", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"serve did not answer /healthz:\n{self.log.read_text()}")

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(20)
        self.process = None

    def metrics(self, key: str) -> str:
        return httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {key}"}).text


@pytest.fixture
def database(influxd: LocalInfluxd) -> Iterator[str]:
    name = f"abuse_{uuid.uuid4().hex[:10]}"
    yield name
    with InfluxClient(url=influxd.url, database=name) as client:
        client.query(f'DROP DATABASE "{name}"')


@contextlib.contextmanager
def running(
    influxd: LocalInfluxd, database: str, data_dir: Path, **env: str
) -> Iterator[LoggedServe]:
    serve = LoggedServe(data_dir, influxd.url, database, **env)
    serve.start()
    try:
        yield serve
    finally:
        serve.stop()


def basic(station_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class HonestStation:
    """A station on its own thread sending Heartbeats; ``worst_s`` is its worst round trip."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url, self.headers = url, headers
        self.round_trips: list[float] = []
        self.error: BaseException | None = None
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with connect_sync(
                self.url,
                subprotocols=[OCPP16],
                additional_headers=self.headers,
                ping_interval=None,  # its round trips are the measure
            ) as ws:
                self._connected.set()
                n = 0
                while not self._stop.is_set():
                    n += 1
                    began = time.perf_counter()
                    ws.send(f'[2,"hb{n}","Heartbeat",{{}}]')
                    answer = orjson.loads(ws.recv(timeout=60))
                    self.round_trips.append(time.perf_counter() - began)
                    assert answer[:2] == [3, f"hb{n}"], answer
                    time.sleep(0.02)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self._connected.set()

    def __enter__(self) -> HonestStation:
        self._thread.start()
        self._connected.wait(15)
        assert self.error is None, f"the honest station could not connect: {self.error!r}"
        time.sleep(0.2)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(70)
        assert self.error is None, f"the honest station failed: {self.error!r}"

    @property
    def worst_s(self) -> float:
        return max(self.round_trips, default=0.0)


def meter_values(n_items: int, message_id: str = "big") -> str:
    sample = {"measurand": "Power.Active.Import", "unit": "W"}
    samples = [{"value": str(i), **sample} for i in range(n_items)]
    payload = {"connectorId": 1, "meterValue": [{"timestamp": T, "sampledValue": samples}]}
    return orjson.dumps([2, message_id, "MeterValues", payload]).decode()


# -- finding 4: huge frames ------------------------------------------------------------------


def test_a_huge_frame_is_closed_and_a_large_one_refused_while_others_are_served(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    huge = meter_values(150_000)  # about 10 MB, as in the finding
    many = meter_values(2_000, "many")  # under the frame limit, over the items limit
    assert len(huge) > 9_000_000 and len(many) < 256 * 1024

    async def attack(base: str) -> tuple[int | None, list[Any]]:
        async with websockets.connect(
            f"{base}/CP-ATTACK", subprotocols=[OCPP16], max_size=None, open_timeout=10
        ) as ws:
            await ws.send(many)
            refused = list(orjson.loads(await asyncio.wait_for(ws.recv(), 60)))
            try:
                await ws.send(huge)
                await asyncio.wait_for(ws.recv(), 60)
            except ConnectionClosed as closed:
                return (closed.rcvd.code if closed.rcvd else None), refused
        return None, refused

    async def flood(base: str, seconds: float) -> int:
        """Frames at the items limit from 4 connections, back to back."""
        frame = meter_values(500, "flood")
        deadline = time.monotonic() + seconds
        sent = 0

        async def one(i: int) -> None:
            nonlocal sent
            async with websockets.connect(
                f"{base}/CP-FLOOD-{i}", subprotocols=[OCPP16], open_timeout=10
            ) as ws:
                while time.monotonic() < deadline:
                    await ws.send(frame)
                    await asyncio.wait_for(ws.recv(), 60)
                    sent += 1

        await asyncio.gather(*(one(i) for i in range(4)))
        return sent

    with running(influxd, database, tmp_path) as serve:
        base = f"ws://127.0.0.1:{serve.port}/ocpp"
        with HonestStation(f"{base}/CP-HONEST") as honest:
            time.sleep(0.3)
            code, refused = asyncio.run(attack(base))
            flooded = asyncio.run(flood(base, 3.0))
        figures = f"worst heartbeat {honest.worst_s:.3f} s over {len(honest.round_trips)}"
        logger.info("huge frames: %s, %d floods answered", figures, flooded)
        assert honest.worst_s < WORST_RTT_S, figures
        assert code == 1009, f"the 10 MB frame was not closed with 1009 ({code}); {figures}"
        assert refused[:3] == [4, "many", "OccurenceConstraintViolation"], refused
        assert "500" in refused[3], refused
        assert flooded > 10, figures


# -- finding 5: wrong-password storms --------------------------------------------------------


def test_a_wrong_password_storm_stalls_no_one_and_is_counted_and_logged(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    env = {"CHARGEWATCH_OCPP_STATION_AUTH": "true"}
    serve = LoggedServe(tmp_path, influxd.url, database, **env)
    viewer = serve.cli("keys", "create", "--role", "viewer")
    for station in ("CP-HONEST", "CP-VICTIM"):
        serve.cli("stations", "set-password", station, stdin=f"{PASSWORD}\n")
    wrong = "wrong-password-of-the-storm"

    async def storm(base: str, n: int) -> list[int]:
        async def one(i: int) -> int:
            try:
                async with websockets.connect(
                    f"{base}/CP-VICTIM",
                    subprotocols=[OCPP16],
                    additional_headers=basic("CP-VICTIM", f"{wrong}-{i}"),
                    open_timeout=30,
                ):
                    return 101
            except InvalidStatus as refused:
                return refused.response.status_code

        return list(await asyncio.gather(*(one(i) for i in range(n))))

    serve.start()
    try:
        base = f"ws://127.0.0.1:{serve.port}/ocpp"
        with HonestStation(f"{base}/CP-HONEST", basic("CP-HONEST", PASSWORD)) as honest:
            time.sleep(0.3)
            began = time.perf_counter()
            statuses = asyncio.run(storm(base, 100))
            storm_s = time.perf_counter() - began
        metrics = serve.metrics(viewer)
    finally:
        serve.stop()
    figures = f"worst heartbeat {honest.worst_s:.3f} s; storm {storm_s:.2f} s; {statuses[:8]}"
    logger.info("password storm: %s", figures)
    assert honest.worst_s < WORST_RTT_S, figures
    assert 101 not in statuses, figures
    refused = _counter(metrics, "chargewatch_ocpp_connections_refused_total")
    assert sum(refused.values()) == 100, (refused, figures)
    assert refused.get("wrong_password", 0) >= 1 and refused.get("throttled", 0) >= 1, refused
    log = serve.log.read_text()
    refusals = [line for line in log.splitlines() if "refused station" in line]
    assert len(refusals) == 100, log[-2000:]
    assert all("CP-VICTIM" in line and "127.0.0.1" in line for line in refusals), refusals[:3]
    assert wrong not in log and PASSWORD not in log


def _counter(metrics: str, name: str) -> dict[str, float]:
    found = {}
    for match in re.finditer(rf'^{name}\{{reason="([a-z_]+)"\}} (\S+)$', metrics, re.M):
        found[match.group(1)] = float(match.group(2))
    return found


# -- finding 6: slow and many connections ----------------------------------------------------


def _slow_clients(port: int, n: int) -> list[socket.socket]:
    """Connections that send half a request's headers and then nothing."""
    clients = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /ocpp/CP-SLOW HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        clients.append(s)
    return clients


def _closed_within(clients: list[socket.socket], seconds: float) -> list[socket.socket]:
    """The clients whose connection the server closes within ``seconds`` from now."""
    closed: list[socket.socket] = []
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client, selectors.EVENT_READ)
        deadline = time.monotonic() + seconds
        while len(closed) < len(clients) and (left := deadline - time.monotonic()) > 0:
            for key, _events in selector.select(left):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                try:
                    data = ready.recv(4096)
                except OSError:  # reset: closed as well
                    data = b""
                if not data:
                    closed.append(ready)
                    selector.unregister(ready)
    return closed


def test_slow_upgrades_are_closed_and_connections_limited_per_address(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    env = {
        "CHARGEWATCH_HANDSHAKE_TIMEOUT_S": "2",
        "CHARGEWATCH_MAX_CONNECTIONS_PER_ADDRESS": "300",
    }
    with running(influxd, database, tmp_path, **env) as serve:
        base = f"ws://127.0.0.1:{serve.port}/ocpp"
        with HonestStation(f"{base}/CP-HONEST") as honest:
            began = time.monotonic()
            slow = _slow_clients(serve.port, 400)  # the honest station holds one more
            at_once = _closed_within(slow, 0.5)
            kept = [c for c in slow if c not in at_once]
            later = _closed_within(kept, 6.0)
            waited_s = time.monotonic() - began
            for client in slow:
                client.close()
            health = httpx.get(f"{serve.url}/healthz", timeout=5).status_code
        figures = (
            f"{len(at_once)} of 400 closed at once, {len(later)} more within {waited_s:.1f} s; "
            f"worst heartbeat {honest.worst_s:.3f} s"
        )
        logger.info("slow clients: %s", figures)
        assert honest.worst_s < WORST_RTT_S, figures
        assert len(at_once) == 101 and len(later) == 299 and health == 200, figures


def test_the_service_is_reachable_again_once_slow_clients_time_out(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    env = {"CHARGEWATCH_MAX_CONNECTIONS": "200", "CHARGEWATCH_HANDSHAKE_TIMEOUT_S": "2"}
    with running(influxd, database, tmp_path, **env) as serve:
        slow = _slow_clients(serve.port, 250)
        at_once = _closed_within(slow, 0.5)
        later = _closed_within([c for c in slow if c not in at_once], 4.0)
        status = httpx.get(f"{serve.url}/healthz", timeout=5).status_code
        for client in slow:
            client.close()
    assert (len(at_once), len(later), status) == (50, 200, 200)


# -- finding 11: station ids the store cannot hold ---------------------------------------


BAD_IDS = {
    "ends in a backslash": "CP-1%5C",
    "backslash inside": "CP%5C1",
    "longer than 48": "C" * 49,
    "a space": "CP%201",
    "a comma": "CP,1",
    "a control character": "CP%071",
    "not ASCII": "CP-%C3%A4",
}
GOOD_IDS = ["CP-1", "C" * 48, "a:b*c|d@e.f=g+h_i-0"]


def test_station_ids_the_store_cannot_hold_are_refused_at_connect(
    influxd: LocalInfluxd, database: str, tmp_path: Path
) -> None:
    async def attempt(base: str, station_id: str) -> tuple[int, str]:
        try:
            async with websockets.connect(
                f"{base}/{station_id}", subprotocols=[OCPP16], open_timeout=10
            ) as ws:
                await ws.send('[2,"1","Heartbeat",{}]')
                await ws.recv()
                return 101, ""
        except InvalidStatus as refused:
            return refused.response.status_code, refused.response.body.decode()

    with running(influxd, database, tmp_path) as serve:
        base = f"ws://127.0.0.1:{serve.port}/ocpp"
        bad = {name: asyncio.run(attempt(base, sid)) for name, sid in BAD_IDS.items()}
        good = [asyncio.run(attempt(base, sid))[0] for sid in GOOD_IDS]
    assert all(status == 404 and "station id" in reason for status, reason in bad.values()), bad
    assert good == [101, 101, 101]
    log = serve.log.read_text()
    assert "Traceback" not in log and log.count("refused station") == len(BAD_IDS), log[-2000:]
