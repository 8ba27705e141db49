"""Keepalive of `serve`'s WebSocket protocol (``service.connections``): a peer that keeps
talking is never pinged (each ping is a frame, a timer and a pong per station and interval); a
silent peer is pinged one interval after its last frame and closed one ping timeout later when
it does not answer; one that answers stays.

A real uvicorn server (in a thread) with the guarded protocols and an echo application; the
peers are raw sockets driven by websockets' sans-I/O client, so every frame is seen.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from service.connections import ConnectionGuard, guarded_protocols
from tests.conftest import free_port

PING_INTERVAL_S = 0.4
PING_TIMEOUT_S = 0.4


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})


@pytest.fixture
def port() -> Iterator[int]:
    """A uvicorn server with ``guarded_protocols`` and short keepalive times."""
    chosen = free_port()
    http, ws = guarded_protocols(ConnectionGuard(max_connections=16, per_address=0), 5.0)
    config = uvicorn.Config(
        echo,
        host="127.0.0.1",
        port=chosen,
        http=http,
        ws=ws,
        ws_ping_interval=PING_INTERVAL_S,
        ws_ping_timeout=PING_TIMEOUT_S,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    yield chosen
    server.should_exit = True
    thread.join(10)


class Peer:
    """A WebSocket client over a raw socket that answers pings only when told to."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws"))
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        self.pings: list[float] = []  # when each ping came
        self.closed_at: float | None = None
        while not any(isinstance(event, Response) for event in self._read(5.0)):
            pass

    def send(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self._flush()

    def listen(self, seconds: float, *, answer_pings: bool) -> None:
        """Read frames for ``seconds`` (or until closed), noting pings and the close."""
        end = time.monotonic() + seconds
        while self.closed_at is None and time.monotonic() < end:
            for event in self._read(end - time.monotonic()):
                if isinstance(event, Frame) and event.opcode is Opcode.PING:
                    self.pings.append(time.monotonic())
            if answer_pings:
                self._flush()  # the protocol queued a pong for each ping
            else:
                self.protocol.data_to_send()  # dropped: no pong goes out

    def close(self) -> None:
        self.sock.close()

    def _flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data:
            self.sock.sendall(data)

    def _read(self, timeout_s: float) -> list[object]:
        self.sock.settimeout(max(0.001, timeout_s))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return []
        if not data:
            self.closed_at = time.monotonic()
            self.protocol.receive_eof()
        else:
            self.protocol.receive_data(data)
        return list(self.protocol.events_received())


def test_a_talking_peer_is_never_pinged(port: int) -> None:
    peer = Peer(port)
    try:
        end = time.monotonic() + 4 * PING_INTERVAL_S
        while time.monotonic() < end:  # a message every quarter interval, as a busy station
            peer.send("MeterValues")
            peer.listen(PING_INTERVAL_S / 4, answer_pings=True)
        assert peer.pings == []
        assert peer.closed_at is None
    finally:
        peer.close()


def test_a_silent_peer_is_pinged_after_an_interval_and_closed_if_it_does_not_answer(
    port: int,
) -> None:
    peer = Peer(port)
    try:
        peer.send("BootNotification")
        last_sent = time.monotonic()
        peer.listen(4 * (PING_INTERVAL_S + PING_TIMEOUT_S), answer_pings=False)
        assert len(peer.pings) == 1
        assert peer.pings[0] - last_sent >= PING_INTERVAL_S * 0.9
        assert peer.closed_at is not None
        assert peer.closed_at - peer.pings[0] >= PING_TIMEOUT_S * 0.9
    finally:
        peer.close()


def test_a_silent_peer_that_answers_pings_stays(port: int) -> None:
    peer = Peer(port)
    try:
        peer.listen(4 * PING_INTERVAL_S, answer_pings=True)
        assert len(peer.pings) >= 2
        assert peer.closed_at is None
    finally:
        peer.close()
