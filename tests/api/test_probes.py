"""An attacker's probes against the HTTP side of the real service wiring (brief H2).

Each probe is a fault that was found and fixed:

- six request bodies that never finish held every place of ``POST /api/v1/events``: every other
  client got 503 for as long as the sockets stayed open;
- a client hanging up in the middle of its body left a traceback in the log, each time, and a
  verdict's body that never finished held its connection for ever;
- an ``Authorization: Basic`` header with bytes beyond ASCII on the OCPP upgrade was a 500;
- a station id with a ``/`` (or none) matched no route: a bare 403 without the reason.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from api.ocpp import basic_credentials
from chargewatch.influx import LocalInfluxd
from chargewatch.roles import Role
from chargewatch.verdicts import session_flag_id
from service.serve import build_app

from .server import served
from .test_events_api import make_service, reading

GRACE_S = 1.0  # the handshake timeout, which a body gets to start


class Served:
    def __init__(self, url: str, keys: dict[str, str]) -> None:
        self.url, self.keys = url, keys
        self.port = int(url.rsplit(":", 1)[1])

    def raw(self, request: bytes) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(request)
        return sock

    def post(self, key: str, events: list[dict[str, object]]) -> httpx.Response:
        return httpx.post(
            f"{self.url}/api/v1/events",
            content=orjson.dumps(events),
            headers={"Authorization": f"Bearer {self.keys[key]}"},
            timeout=30,
        )


@pytest.fixture
def service(influxd: LocalInfluxd, tmp_path: Path) -> Iterator[Served]:
    running = make_service(influxd, tmp_path, handshake_timeout_s=GRACE_S, ocpp_station_auth=True)
    running.start()
    keys = {
        "a": running.state.create_api_key(Role.OPERATOR),
        "b": running.state.create_api_key(Role.OPERATOR),
    }
    try:
        with served(build_app(running)) as url:
            yield Served(url, keys)
    finally:
        running.stop()


def _answer(sock: socket.socket) -> bytes:
    """The server's answer, up to the end of its headers and a little of its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _unfinished_body(key: str) -> bytes:
    return (
        f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
    ).encode()


def test_bodies_that_never_finish_hold_neither_the_others_nor_their_places(
    service: Served,
) -> None:
    stalled = [service.raw(_unfinished_body(service.keys["a"])) for _ in range(6)]
    try:
        time.sleep(0.3)  # they hold what they can
        other = service.post("b", [reading(1)])
        # Before: all six places held, with no end; key b got 503 until the sockets closed.
        assert other.status_code == 200, other.text
        answers = [_answer(sock).split(b"\r\n", 1)[0] for sock in stalled]
    finally:
        for sock in stalled:
            sock.close()
    # One client holds all places but one worker's share (2 workers: 4 of 6); its others are
    # told so, and the four that never finish get 408 once the grace is over.
    assert (
        sorted(answers)
        == [b"HTTP/1.1 408 Request Timeout"] * 4 + [b"HTTP/1.1 503 Service Unavailable"] * 2
    ), answers
    again = service.post("a", [reading(2)])  # the places were given back
    assert again.status_code == 200, again.text


def test_a_client_hanging_up_mid_body_is_one_line_in_the_log(
    service: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sock = service.raw(_unfinished_body(service.keys["a"]) + b"{" * 100)
    time.sleep(0.2)
    sock.close()
    deadline = time.monotonic() + 10  # a bound against hanging, not a speed check
    while time.monotonic() < deadline and not any(
        "hung up" in r.getMessage() or r.exc_info for r in caplog.records
    ):
        time.sleep(0.05)
    assert any("hung up" in r.getMessage() for r in caplog.records), caplog.text[-2000:]
    assert not any(r.exc_info for r in caplog.records), caplog.text[-2000:]
    assert service.post("a", [reading(3)]).status_code == 200


def test_a_verdict_body_that_never_finishes_gets_408(service: Served) -> None:
    flag = session_flag_id("CP-1", 1, "stall", "CP-1-1")
    sock = service.raw(
        (
            f"POST /api/v1/flags/{flag}/verdict HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {service.keys['a']}\r\nContent-Type: application/json\r\n"
            'Content-Length: 100\r\n\r\n{"verdict":'
        ).encode()
    )
    try:
        answer = _answer(sock)  # before: no answer, the connection held for ever
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer


def _upgrade(service: Served, path: str, *headers: bytes) -> bytes:
    key = base64.b64encode(os.urandom(16))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n".encode()
        + b"Sec-WebSocket-Key: "
        + key
        + b"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
        + b"".join(header + b"\r\n" for header in headers)
        + b"\r\n"
    )
    sock = service.raw(request)
    try:
        data = _answer(sock)
        sock.settimeout(1)
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except TimeoutError:
            pass
        return data
    finally:
        sock.close()


def test_basic_credentials_beyond_ascii_are_refused_not_a_500(service: Served) -> None:
    answer = _upgrade(service, "/ocpp/CP-1", b"Authorization: Basic \xff\xfe\xe9")
    assert answer.startswith(b"HTTP/1.1 401"), answer
    assert b"send the station's HTTP Basic credentials" in answer, answer


@pytest.mark.parametrize(
    "header",
    ["Basic \xff\xfe", "Basic Q1AtMTrp", "Basic !!!!", "Basic " + "QQ" * 3, "Bearer x", ""],
    ids=["latin-1", "not utf-8", "not base64", "no colon", "other scheme", "empty"],
)
def test_unusable_basic_headers_are_no_credentials(header: str) -> None:
    assert basic_credentials(header) is None


@pytest.mark.parametrize("path", ["/ocpp/CP/1", "/ocpp/", "/ocpp/CP%2F1"])
def test_station_ids_with_a_slash_or_none_get_404_with_the_reason(
    service: Served, path: str
) -> None:
    answer = _upgrade(service, path)
    assert answer.startswith(b"HTTP/1.1 404"), answer
    assert b"the station id" in answer, answer
