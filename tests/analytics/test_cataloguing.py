"""Detection over an InfluxDB window fills the session catalogue: one row per judged session with
every kind's score, flags that match the stored ``flag`` points, rows replaced when judged again."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pytest

from analytics.window import detect_window
from chargewatch.catalog import list_sessions
from chargewatch.events import EventDecoder, parse_ts
from chargewatch.flags import query_flags
from chargewatch.influx import BatchWriter, InfluxClient
from chargewatch.kinds import AnomalyKind
from chargewatch.state import StateStore
from ingest.files import ingest_stream
from ingest.pseudonym import Pseudonymizer
from simulator import SimulationConfig, simulate

START = "2026-11-23T06:00:00+00:00"
HOUR_NS = 3600 * 1_000_000_000


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("catalog-fleet")
    config = SimulationConfig(
        stations=10, hours=8, seed=33, start=datetime.fromisoformat(START), anomaly_rate=0.5
    )
    simulate(config, folder / "events.jsonl", folder / "labels.jsonl")
    return (folder / "events.jsonl").read_bytes()


def test_every_judged_session_is_catalogued_with_its_scores(
    influx: InfluxClient, tmp_path: Path, fleet: bytes
) -> None:
    decoder = EventDecoder(Pseudonymizer(b"catalog-test-key-0123456789"))
    with BatchWriter(influx) as writer:
        ingest_stream(io.BytesIO(fleet), decoder=decoder, sink=writer, on_reject=print)
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    since, until = parse_ts(START), parse_ts(START) + 9 * HOUR_NS
    flags, report = detect_window(influx, since, until, catalog=state, judged_at_ns=42)

    rows = list_sessions(state, limit=1000)[0]
    assert len(rows) == report.sessions > 20
    assert {r.updated_at_ns for r in rows} == {42}
    kinds = [k.value for k in AnomalyKind]
    assert all([v.kind for v in r.verdicts] == kinds for r in rows)
    flagged = {(r.session_id, k) for r in rows for k in r.flagged_kinds}
    assert flagged, "the fleet should hold anomalies"
    stored = query_flags(influx, 0, until + 48 * HOUR_NS)
    assert flagged == {(f.session_id, f.kind) for f in stored if f.session_id is not None}
    assert flagged == {(f.session_id, f.kind) for f in flags if f.session_id is not None}
    for r in rows:
        for v in r.verdicts:
            assert v.flagged == (v.kind in r.flagged_kinds)
            assert v.score is None or 0.0 <= v.score <= 1.0
            assert (v.start_ns is not None) == v.flagged
        assert r.stop_ns is None or r.stop_ns >= r.start_ns

    detect_window(influx, since, until, catalog=state, judged_at_ns=43)  # judged again
    again = list_sessions(state, limit=1000)[0]
    assert len(again) == len(rows)
    assert {r.updated_at_ns for r in again} == {43}
    state.close()
