"""The live fleet replays a simulated fleet over OCPP 1.6 and 2.0.1 into a real gateway."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from chargewatch.events import Reading, SessionStart, SessionStop
from simulator import SimulationConfig, simulate
from simulator.live import LiveError, VersionMix, run_live
from simulator.output import plain_event
from tests.ingest.ocppj.harness import PSEUDONYMIZE, Collector, make_gateway, serving


def test_live_replay_delivers_every_reading_and_session(tmp_path: Path) -> None:
    config = SimulationConfig(
        stations=6, hours=8, seed=11, start=datetime(2026, 11, 23, tzinfo=UTC), anomaly_rate=0.0
    )
    events_path = tmp_path / "events.jsonl"
    simulate(config, events_path, tmp_path / "labels.jsonl")
    # each station's message style undone: numbers as numbers, as the replayer sends them
    lines = [plain_event(orjson.loads(line)) for line in events_path.read_bytes().splitlines()]
    expected = Counter(e["type"] for e in lines)
    sink = Collector()

    async def main() -> None:
        async with serving(make_gateway(sink)) as url:
            summary = await run_live(url, events_path, speed=1e9, versions=VersionMix.MIXED)
            assert summary.stations == 6 and summary.stations_failed == 0
            assert summary.events == len(lines)
            assert summary.call_errors == {}

    asyncio.run(main())
    got = Counter(type(e).__name__ for e in sink.events)
    # 2.0.1 stations (every third) also send the register at Transaction.Begin and .End
    v201 = {sid for i, sid in enumerate(sorted({e["station_id"] for e in lines})) if i % 3 == 2}
    boundaries = [
        e
        for e in lines
        if e["station_id"] in v201
        and (e["type"], e.get("meter_start_wh"), e.get("meter_stop_wh")) != (e["type"], None, None)
    ]
    assert got["Reading"] == expected["reading"] + len(boundaries)
    assert got["SessionStart"] == expected["session_start"]
    assert got["SessionStop"] == expected["session_stop"]
    starts = [e for e in sink.events if isinstance(e, SessionStart)]
    tags = {PSEUDONYMIZE(e["id_tag"]) for e in lines if e["type"] == "session_start"}
    assert {s.id_pseudonym for s in starts} == tags
    # every reading taken in a session arrives in the session the gateway opened for it
    sessions = {s.session_id for s in starts}
    in_session = [e for e in sink.events if isinstance(e, Reading) and e.session_id]
    in_file = sum(1 for e in lines if e["type"] == "reading" and e.get("session_id"))
    assert len(in_session) == in_file + len(boundaries)
    assert {r.session_id for r in in_session} <= sessions
    assert {s.session_id for s in sink.events if isinstance(s, SessionStop)} <= sessions
    energy = Counter(r.energy_wh for r in sink.events if isinstance(r, Reading))
    sent = Counter(e.get("energy_wh") for e in lines if e["type"] == "reading")
    assert all(energy[value] >= count for value, count in sent.items())


def test_live_replay_to_nothing_is_a_connection_error(tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"
    events_path.write_text(
        '{"type":"status","ts":"2026-11-23T00:00:06Z","station_id":"S1","connector_id":1,'
        '"status":"Available"}\n'
    )

    async def main() -> None:
        async with serving(make_gateway(Collector())) as url:
            port_url = url
        await run_live(port_url, events_path, speed=1e9)  # the server is gone now

    with pytest.raises(LiveError, match="no station could replay"):
        asyncio.run(main())
    assert issubclass(LiveError, OSError)
