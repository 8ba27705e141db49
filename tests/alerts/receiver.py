"""A tiny webhook receiver for tests: records every notification Alertmanager delivers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from chargewatch.influx.server import free_port

Notification = dict[str, Any]


class Receiver:
    """An HTTP server on loopback keeping each POSTed JSON body with its path (one path per
    Alertmanager under test, so their notifications stay apart)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._got: list[tuple[str, Notification]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver._got.append((self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def notifications(self, path: str) -> list[Notification]:
        with self._lock:
            return [body for got_path, body in self._got if got_path == path]

    def wait(
        self, path: str, until: Callable[[list[Notification]], bool], timeout_s: float = 15.0
    ) -> list[Notification]:
        """The notifications of ``path`` once ``until`` holds for them; AssertionError after
        ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = self.notifications(path)
            if until(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"no such notifications at {path} in {timeout_s} s: {got}")
            time.sleep(0.05)


def firing(notifications: list[Notification]) -> list[Notification]:
    return [n for n in notifications if n["status"] == "firing"]


def resolved(notifications: list[Notification]) -> list[Notification]:
    return [n for n in notifications if n["status"] == "resolved"]
