#!/usr/bin/env python3
"""A tiny webhook receiver for the demo: where Alertmanager delivers pages on this machine.

    receiver.py listen --port 9094 --out var/pages.jsonl   # until SIGTERM/SIGINT
    receiver.py show var/pages.jsonl                       # one line per alert notified

``listen`` binds 127.0.0.1 only and appends each notification Alertmanager POSTs (its webhook
JSON, one object per line) to the file; a body that is not a JSON object is answered 400 and
not kept. ``show`` prints, for each alert of each notification kept, its status, severity,
alertname, station and summary. Standard library only: it runs with any Python 3.11, no
virtualenv needed. In production the webhook goes to PagerDuty, Opsgenie, Slack or a chat
bridge instead.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 16 << 20  # Alertmanager batches a group's alerts: a few MB at most


def listen(port: int, out: Path) -> None:
    """Serve on 127.0.0.1:``port`` until SIGTERM or SIGINT, appending notifications to ``out``."""
    lock = threading.Lock()
    out.parent.mkdir(parents=True, exist_ok=True)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY:
                self._answer(400, f"Content-Length must be 1..{MAX_BODY}")
                return
            try:
                body = json.loads(self.rfile.read(length))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                self._answer(400, f"body: not JSON ({exc})")
                return
            if not isinstance(body, dict):
                self._answer(400, "body: not a JSON object")
                return
            with lock, out.open("a", encoding="utf-8") as file:
                file.write(json.dumps(body, separators=(",", ":")) + "\n")
            self._answer(200, "ok")

        def _answer(self, code: int, text: str) -> None:
            data = (text + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the file is the record

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write(f"receiver listening on http://127.0.0.1:{port}, notifications to {out}\n")
    sys.stdout.flush()
    server.serve_forever()
    server.server_close()


def show(path: Path) -> int:
    """Print each alert of each notification in ``path``; how many were printed."""
    shown = 0
    if not path.exists():
        return 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            notification = json.loads(line)
            alerts = notification["alerts"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            sys.stderr.write(f"{path}:{number}: not a notification ({exc})\n")
            continue
        for alert in alerts:
            labels = alert.get("labels") or {}
            annotations = alert.get("annotations") or {}
            sys.stdout.write(
                f"{alert.get('status', '?'):8} {labels.get('severity', '?'):6} "
                f"{labels.get('alertname', '?'):24} {labels.get('station_id', '-'):16} "
                f"{annotations.get('summary', '')}\n"
            )
            shown += 1
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listening = commands.add_parser("listen", help="receive notifications into a file")
    listening.add_argument("--port", type=int, required=True)
    listening.add_argument("--out", type=Path, required=True)
    showing = commands.add_parser("show", help="print the alerts notified so far")
    showing.add_argument("file", type=Path)
    args = parser.parse_args()
    if args.command == "listen":
        listen(args.port, args.out)
    else:
        show(args.file)


if __name__ == "__main__":
    main()
