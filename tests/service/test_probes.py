"""An attacker's probes against the OCPP endpoint of a real `chargewatch serve` (brief H2).

One serve process, station authentication on, for the module. Each probe is a fault that was
found and fixed; each asserts what a user would notice, not how fast:

- a station pipelining thousands of Calls (against OCPP-J's one at a time) had the event loop
  answer its whole backlog before anyone else: an honest station waited for thousands of its
  answers, seconds;
- a peer flooding pings and never reading the pongs made serve buffer every pong: its memory
  grew by 14 MB a second, without end;
- a stranger failing a station's password on purpose, from another address, kept that station
  out (429) for as long as it went on;
- ``chargewatch ingest`` (and ``detect --input``) called a directory, a loop of symbolic links
  or a pipe "no such file".
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import websockets.sync.client
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.settings import Settings
from chargewatch.state import StateStore
from ingest.files import event_file_problem

from .test_ocpp_abuse import LoggedServe, basic

logger = logging.getLogger(__name__)  # the figures: pytest --log-cli-level=INFO

PASSWORD = "a-long-station-password-for-probes"
OCPP16 = Subprotocol("ocpp1.6")
STATIONS = ("CP-HONEST", "CP-FLOOD", "CP-PING", "CP-LOCKED")


@pytest.fixture(scope="module")
def serve(influxd: LocalInfluxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedServe]:
    folder = tmp_path_factory.mktemp("probes")
    database = f"probes_{uuid.uuid4().hex[:10]}"
    state = StateStore(Settings(_env_file=None, data_dir=folder).state_db_url)  # type: ignore[call-arg]
    for station in STATIONS:
        state.set_station_password(station, PASSWORD)
    state.close()
    process = LoggedServe(folder, influxd.url, database, CHARGEWATCH_OCPP_STATION_AUTH="true")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        with InfluxClient(url=influxd.url, database=database) as client:
            client.query(f'DROP DATABASE "{database}"')


# -- a raw WebSocket client: what an attacker sends, byte for byte ------------------------------


def frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455), FIN set."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x80 | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def upgraded(port: int, station: str, *, receive_buffer: int | None = None) -> socket.socket:
    """A socket upgraded to OCPP 1.6 as ``station`` (with its password)."""
    sock = socket.socket()
    if receive_buffer is not None:  # set before connecting: the kernel then never grows it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    auth = basic(station, PASSWORD)["Authorization"]
    sock.sendall(
        f"GET /ocpp/{station} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: ocpp1.6\r\nAuthorization: {auth}\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)  # one byte at a time: nothing after the headers is taken
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def count_text_frames(sock: socket.socket, counted: list[int], stop: threading.Event) -> None:
    """Count the server's text frames (small, unmasked) into ``counted[0]`` until stopped."""
    sock.settimeout(0.2)
    buffer = b""
    while not stop.is_set():
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            continue
        if not data:
            return
        buffer += data
        while len(buffer) >= 2:
            size = buffer[1] & 0x7F
            header = 2 + (2 if size == 126 else 8 if size == 127 else 0)
            if size >= 126:
                if len(buffer) < header:
                    break
                size = int.from_bytes(buffer[2:header], "big")
            if len(buffer) < header + size:
                break
            if buffer[0] & 0x0F == 0x1:
                counted[0] += 1
            buffer = buffer[header + size :]


# -- the probes ------------------------------------------------------------------------------------


def test_a_station_pipelining_calls_does_not_make_another_wait_for_its_backlog(
    serve: LoggedServe,
) -> None:
    flood = b"".join(frame(0x1, b'[2,"%d","Heartbeat",{}]' % i) for i in range(20_000))
    flooder = upgraded(serve.port, "CP-FLOOD")
    answered, stop = [0], threading.Event()
    reader = threading.Thread(target=count_text_frames, args=(flooder, answered, stop))
    reader.start()
    waited: list[int] = []  # the flooder's answers sent while the honest Heartbeat waited
    try:
        with websockets.sync.client.connect(
            f"ws://127.0.0.1:{serve.port}/ocpp/CP-HONEST",
            subprotocols=[OCPP16],
            additional_headers=basic("CP-HONEST", PASSWORD),
            ping_interval=None,
        ) as honest:
            honest.send('[2,"first","Heartbeat",{}]')  # its first message stores its liveness
            honest.recv(timeout=60)
            threading.Thread(target=flooder.sendall, args=(flood,), daemon=True).start()
            deadline = time.monotonic() + 60  # a bound against hanging, not a speed check
            while answered[0] < 17_000 and len(waited) < 50 and time.monotonic() < deadline:
                if answered[0] < 1_000:  # the flood has not begun in earnest yet
                    time.sleep(0.005)
                    continue
                before = answered[0]
                honest.send(f'[2,"h{len(waited)}","Heartbeat",{{}}]')
                answer = orjson.loads(honest.recv(timeout=60))
                waited.append(answered[0] - before)
                assert answer[:2] == [3, f"h{len(waited) - 1}"], answer
                time.sleep(0.01)
    finally:
        stop.set()
        reader.join(10)
        flooder.close()
    logger.info(
        "flood: %d Heartbeats waited for %d of the flooder's answers at most (median %d)",
        len(waited),
        max(waited, default=0),
        sorted(waited)[len(waited) // 2] if waited else 0,
    )
    assert len(waited) >= 3, waited
    # Served in turn, a message each: the honest Heartbeat waits for a few of the flooder's
    # answers; it waited for the flooder's whole backlog (thousands) before the fix.
    assert max(waited) < 1000, waited


def test_a_ping_flood_that_never_reads_its_pongs_is_not_buffered(serve: LoggedServe) -> None:
    pings = frame(0x9, b"p" * 125) * 2_000  # 262 kB
    sock = upgraded(serve.port, "CP-PING", receive_buffer=4096)
    sock.settimeout(2.0)  # the server stopped reading: sending blocks
    rss_before = _rss_mb(serve)
    sent = 0
    with contextlib.suppress(TimeoutError):
        while sent < 64_000_000:
            sock.sendall(pings)
            sent += len(pings)
    rss_after = _rss_mb(serve)
    sock.close()
    logger.info(
        "ping flood: %.1f MB taken before sending blocked; serve %d -> %d MB",
        sent / 1e6,
        rss_before,
        rss_after,
    )
    # What the kernel buffers on both sides holds (a few MB), and the pongs to one read; before
    # the fix serve read and answered all 64 MB and held the pongs.
    assert sent < 24_000_000, sent


def test_failing_a_stations_password_from_elsewhere_does_not_lock_the_station_out(
    serve: LoggedServe,
) -> None:
    def connect(source: str, password: str) -> int:
        sock = socket.socket()
        sock.bind((source, 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", serve.port))
        try:
            with websockets.sync.client.connect(
                f"ws://127.0.0.1:{serve.port}/ocpp/CP-LOCKED",
                sock=sock,
                subprotocols=[OCPP16],
                additional_headers=basic("CP-LOCKED", password),
            ):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    stranger = [connect("127.0.0.3", f"not-the-password-{i}") for i in range(8)]
    station = [connect("127.0.0.2", PASSWORD) for _ in range(3)]
    assert stranger[:5] == [401] * 5 and 429 in stranger, stranger
    assert station == [101, 101, 101], (stranger, station)


def _rss_mb(serve: LoggedServe) -> int:
    assert serve.process is not None
    status = Path(f"/proc/{serve.process.pid}/status").read_text()
    resident = next(line for line in status.splitlines() if line.startswith("VmRSS"))
    return int(resident.split()[1]) // 1024


def test_event_files_that_cannot_be_read_are_named_for_what_they_are(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_bytes(b"{}\n")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    os.mkfifo(tmp_path / "a-pipe")
    problems = {
        name: event_file_problem(tmp_path / name)
        for name in ("events.jsonl", "a-folder", "loop-a", "a-pipe", "missing.jsonl")
    }
    assert problems == {
        "events.jsonl": None,
        "a-folder": "a directory, not a file",
        "loop-a": "a loop of symbolic links",
        "a-pipe": "not a regular file (a pipe, a socket or a device)",
        "missing.jsonl": "no such file",
    }
    done = subprocess.run(
        [sys.executable, "-m", "chargewatch", "ingest", str(tmp_path / "loop-a")],
        env={**os.environ, "CHARGEWATCH_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "loop-a: a loop of symbolic links" in done.stderr, done
