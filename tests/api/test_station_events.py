"""``station`` events from a back office: POST /api/v1/events on the real service and InfluxDB,
then read back as liveness (what alerting asks: last seen per station)."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from chargewatch.events import StationEventKind, parse_ts
from chargewatch.influx import InfluxClient, LocalInfluxd
from chargewatch.roles import Role
from chargewatch.schema import read_station_liveness
from service.serve import build_app

from .server import served
from .test_events_api import make_service, wait_drained

S = 1_000_000_000


def test_station_events_are_taken_stored_and_read_back_as_liveness(
    influxd: LocalInfluxd, tmp_path: Path
) -> None:
    service = make_service(influxd, tmp_path)
    service.start()
    key = service.state.create_api_key(Role.OPERATOR)
    body = [
        {
            "type": "station",
            "ts": "2026-11-24T08:00:00Z",
            "station_id": "BO-1",
            "event": "boot",
            "vendor": "Wallbox",
            "model": "Supernova",
            "firmware": "5.1",
            "ocpp_version": "ocpp1.6",
            "heartbeat_interval_s": 120,
        },
        {
            "type": "station",
            "ts": "2026-11-24T08:09:00Z",
            "station_id": "BO-1",
            "event": "heartbeat",
        },
        {"type": "station", "ts": "2026-11-24T08:05:00Z", "station_id": "BO-2", "event": "connect"},
        {
            "type": "station",
            "ts": "2026-11-24T08:06:00Z",
            "station_id": "BO-2",
            "event": "disconnect",
            "reason": "closed_by_station",
        },
        {"type": "station", "ts": "2026-11-24T08:07:00Z", "station_id": "BO-3", "event": "nap"},
        {
            "type": "station",
            "ts": "2026-11-24T08:07:00Z",
            "station_id": "BO-3",
            "event": "heartbeat",
            "heartbeat_interval_s": -5,
        },
    ]
    try:
        with served(build_app(service)) as url, httpx.Client(base_url=url, timeout=30) as client:
            answer = client.post(
                "/api/v1/events",
                content=orjson.dumps(body),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
        assert answer.status_code == 200, answer.text
        got = answer.json()
        by_type = {kind: n for kind, n in got["accepted_by_type"].items() if n}
        assert (got["accepted"], by_type, got["rejected"]) == (4, {"station": 4}, 2)
        assert [(r["index"], r["field"]) for r in got["rejections"]] == [
            (4, "event"),
            (5, "heartbeat_interval_s"),
        ]
        wait_drained(service)
        with InfluxClient(
            url=service.settings.influx_url, database=service.settings.influx_database
        ) as influx:
            t0 = parse_ts("2026-11-24T08:00:00Z")
            liveness = read_station_liveness(influx, t0 - 3600 * S, t0 + 3600 * S)
    finally:
        service.stop()
    assert sorted(liveness) == ["BO-1", "BO-2"]
    one, two = liveness["BO-1"], liveness["BO-2"]
    assert (one.last.event, one.last_seen_ns // S, one.heartbeat_interval_s) == (
        StationEventKind.HEARTBEAT,
        t0 // S + 540,
        120.0,
    )
    assert one.boot is not None and (one.boot.vendor, one.boot.model) == ("Wallbox", "Supernova")
    assert (two.connected, two.last.reason, two.last_seen_ns // S) == (
        False,
        "closed_by_station",
        t0 // S + 360,
    )
