"""The window path takes the station metadata from the state database: the scheduled job reads
the imported sites and the fleet cards at every run, against a real InfluxDB."""

from __future__ import annotations

import io
from pathlib import Path

import orjson

from analytics.jobs import DetectionJob
from chargewatch.events import EventDecoder, parse_ts
from chargewatch.flags import query_flags
from chargewatch.influx import BatchWriter, InfluxClient
from chargewatch.site_store import mark_fleet, store_stations
from chargewatch.sites import StationInfo
from chargewatch.state import StateStore
from ingest.files import ingest_stream
from ingest.pseudonym import Pseudonymizer

KEY = b"window-stations-key-0123456789"
HOUR_NS = 3600 * 1_000_000_000
CARD = "04A1B2C3D4E5F6"


def _session(station: str, session: str, start_min: int, stop_min: int) -> list[dict[str, object]]:
    def ts(minute: int) -> str:
        return f"2026-11-24T{8 + minute // 60:02d}:{minute % 60:02d}:00.250Z"

    base = {"station_id": station, "connector_id": 1, "session_id": session}
    events: list[dict[str, object]] = [
        {"type": "session_start", "ts": ts(start_min), **base, "id_tag": CARD}
    ]
    events += [
        {
            "type": "reading",
            "ts": ts(m),
            **base,
            "power_w": 7400.0,
            "energy_wh": 1000.0 + 7400.0 * (m - start_min) / 60.0,
        }
        for m in range(start_min, stop_min)
    ]
    events.append({"type": "session_stop", "ts": ts(stop_min), **base})
    return events


def _load(client: InfluxClient) -> None:
    events = _session("ST-A", "S1", 0, 60) + _session("ST-B", "S2", 52, 120)
    events.sort(key=lambda e: str(e["ts"]))
    data = b"\n".join(orjson.dumps(e) for e in events)
    with BatchWriter(client) as writer:
        decoder = EventDecoder(Pseudonymizer(KEY))
        ingest_stream(io.BytesIO(data), decoder=decoder, sink=writer, on_reject=print)


def test_the_job_reads_sites_and_fleet_cards_from_the_state_database(
    influx: InfluxClient, tmp_path: Path
) -> None:
    _load(influx)
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        store_stations(state, [StationInfo("ST-A", "depot"), StationInfo("ST-B", "depot")])
        mark_fleet(state, Pseudonymizer(KEY)(CARD))
        job = DetectionJob(influx, state, settle_s=0, first_lookback_s=6 * 3600)
        job.run(parse_ts("2026-11-24T12:00:00Z"))
    finally:
        state.close()
    since = parse_ts("2026-11-24T00:00:00Z")
    flags = [f for f in query_flags(influx, since, since + 24 * HOUR_NS)]
    concurrent = [f for f in flags if f.kind == "concurrent_id_tag"]
    assert {f.session_id for f in concurrent} == {"S1", "S2"}
    for flag in concurrent:
        assert "at the same site depot: most likely a driver moving" in flag.reason
        assert "marked as a fleet card" in flag.reason
        assert flag.score < 0.25  # a same-site move (x0.4) of a fleet card (x0.5)
