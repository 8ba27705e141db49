"""A small loaded fleet for the read API's tests: a simulated fleet and one hand-made session
ingested into a real InfluxDB, judged by ``detect_window`` (so the catalogue has rows), and the
real service wiring serving it on loopback, with a key of each role and a revoked one."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from analytics.window import detect_window
from chargewatch.catalog import SessionRow, list_sessions
from chargewatch.events import EventDecoder, parse_ts
from chargewatch.influx import BatchWriter, LocalInfluxd
from chargewatch.roles import Role
from chargewatch.settings import Settings
from ingest.files import ingest_stream
from ingest.pseudonym import Pseudonymizer
from service.serve import Service, build_app
from simulator import SimulationConfig, simulate

from .server import served

FLEET_START = "2026-11-23T06:00:00Z"
FLEET_HOURS = 10
WINDOW_SINCE = "2026-11-23T00:00:00Z"
WINDOW_UNTIL = "2026-11-24T00:00:00Z"
HAND_SESSION = "hand-1"
HAND_STATION = "HAND-1"
HAND_CARD = "CARD-0001"
PSEUDONYM_KEY = b"read-api-test-key-0123456789"


def hand_made_events() -> list[dict[str, Any]]:
    """One session written by hand, with figures known exactly: 10:00 to 10:30, 12 kW for 16
    minutes, 6 kW for 5 (the taper, from 10:16), then nothing (full) until the stop; the
    register rises 200 Wh a minute, then 100; the state of charge one point a minute."""
    at = "2026-11-23T10:{:02d}:{:02d}Z".format
    base = {"station_id": HAND_STATION, "connector_id": 1}
    events: list[dict[str, Any]] = [
        {
            "type": "authorize",
            "ts": "2026-11-23T09:59:00Z",
            "station_id": HAND_STATION,
            "id_tag": HAND_CARD,
            "result": "Accepted",
        },
        {
            "type": "session_start",
            "ts": at(0, 0),
            **base,
            "session_id": HAND_SESSION,
            "id_tag": HAND_CARD,
            "meter_start_wh": 1000,
        },
        {"type": "status", "ts": at(0, 0), **base, "status": "Charging"},
        {"type": "status", "ts": at(20, 30), **base, "status": "SuspendedEV"},
        {
            "type": "session_stop",
            "ts": at(30, 0),
            **base,
            "session_id": HAND_SESSION,
            "meter_stop_wh": 4600,
            "reason": "EVDisconnected",
        },
    ]
    for k in range(31):
        power = 12000 if k <= 15 else 6000 if k <= 20 else 0
        energy = 1000 + 200 * k if k <= 15 else min(4000 + 100 * (k - 15), 4600)
        events.append(
            {
                "type": "reading",
                "ts": at(k, 0),
                **base,
                "session_id": HAND_SESSION,
                "energy_wh": energy,
                "power_w": power,
                "power_offered_w": 22000,
                "soc_pct": 50 + min(k, 20),
            }
        )
    return events


@dataclass
class ReadFleet:
    service: Service
    url: str
    client: httpx.Client  # no key
    keys: dict[str, str]  # role name, or "revoked", to its key
    rows: list[SessionRow]
    pseudonym: str  # HAND_CARD's

    def get(self, path: str, key: str | None = "viewer", **params: Any) -> httpx.Response:
        headers = {} if key is None else {"Authorization": f"Bearer {self.keys[key]}"}
        return self.client.get(path, params=params, headers=headers)

    def fresh_key(self, name: str, role: Role = Role.VIEWER) -> str:
        """A new key under ``name``: each test module reads with keys of its own, so that a
        per-key rate limit spent by one never answers another's requests."""
        self.keys[name] = self.service.state.create_api_key(role)
        return self.keys[name]

    @property
    def window(self) -> dict[str, str]:
        return {"since": WINDOW_SINCE, "until": WINDOW_UNTIL}


@pytest.fixture(scope="session")
def read_fleet(
    influxd: LocalInfluxd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReadFleet]:
    folder = tmp_path_factory.mktemp("read-fleet")
    config = SimulationConfig(
        stations=6,
        hours=FLEET_HOURS,
        seed=5,
        start=datetime.fromisoformat(FLEET_START).astimezone(UTC),
        anomaly_rate=0.5,
    )
    simulate(config, folder / "events.jsonl", folder / "labels.jsonl")
    lines = (folder / "events.jsonl").read_bytes()
    lines += b"".join(orjson.dumps(e) + b"\n" for e in hand_made_events())

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        influx_url=influxd.url,
        influx_database=f"read_{uuid.uuid4().hex[:10]}",
        data_dir=folder / "data",
        detect_interval_s=0,  # judged once below; no job re-judging while tests read
        api_rate_burst=1_000_000,  # the role matrix and schemathesis send thousands at once
    )
    service = Service(settings)
    service.start()
    try:
        pseudonymize = Pseudonymizer(PSEUDONYM_KEY)
        with BatchWriter(service.influx) as writer:
            ingest_stream(
                io.BytesIO(lines),
                decoder=EventDecoder(pseudonymize),
                sink=writer,
                on_reject=lambda rejection: pytest.fail(f"rejected: {rejection}"),
            )
        detect_window(
            service.influx,
            parse_ts(WINDOW_SINCE),
            parse_ts(WINDOW_UNTIL),
            catalog=service.state,
            judged_at_ns=parse_ts("2026-11-24T00:00:05Z"),
        )
        rows, _ = list_sessions(service.state, limit=1000)
        keys = {role.value: service.state.create_api_key(role) for role in Role}
        revoked = service.state.create_api_key(Role.ADMIN)
        service.state.revoke_api_key(
            revoked.removeprefix("cw_").split("_")[0], now=datetime.now(UTC)
        )
        keys["revoked"] = revoked
        with served(build_app(service)) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield ReadFleet(service, url, client, keys, rows, pseudonymize(HAND_CARD))
    finally:
        service.stop()
