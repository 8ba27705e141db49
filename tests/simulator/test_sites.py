"""The simulator's sites, declared ratings and shared cards: ``--stations-out`` is a file
``stations import`` takes whole, the same for a seed, and the ``concurrent_id_tag`` labels are
exactly the sessions whose card is in an overlapping session at another station (cloned cards,
fleet cards, drivers moving to the next charger at one site)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from chargewatch.events import parse_ts
from ingest.stations_import import read_stations
from simulator import SimulationConfig, simulate

START = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sites")
    config = SimulationConfig(stations=40, hours=24, seed=4242, start=START, anomaly_rate=0.3)
    simulate(
        config,
        folder / "events.jsonl",
        folder / "labels.jsonl",
        stations_path=folder / "stations.csv",
    )
    return folder


def test_the_stations_file_is_imported_whole(fleet: Path) -> None:
    read = read_stations(fleet / "stations.csv")
    assert read.problems == []
    assert len(read.stations) == 40
    sites = defaultdict(list)
    for s in read.stations:
        sites[s.site_id].append(s)
        assert s.latitude is not None and s.rated_power_w is not None
    assert any(len(group) > 1 for group in sites.values())  # several stations at one site
    # AC ratings are declared at 230 V: 3 x 32 A is 22,080 W whatever the site's voltage
    assert {s.rated_power_w for s in read.stations} <= {
        3680.0,
        7360.0,
        11040.0,
        22080.0,
        50000.0,
        100000.0,
        150000.0,
        300000.0,
        350000.0,
    }


def test_the_stations_file_is_the_same_for_a_seed(fleet: Path, tmp_path: Path) -> None:
    config = SimulationConfig(stations=40, hours=24, seed=4242, start=START, anomaly_rate=0.3)
    simulate(config, tmp_path / "e.jsonl", tmp_path / "l.jsonl", stations_path=tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_bytes() == (fleet / "stations.csv").read_bytes()
    assert (tmp_path / "l.jsonl").read_bytes() == (fleet / "labels.jsonl").read_bytes()


def test_concurrent_labels_are_exactly_the_overlapping_sessions(fleet: Path) -> None:
    starts: dict[str, tuple[str, str, int]] = {}
    stops: dict[str, int] = {}
    end_ns = parse_ts("2026-11-24T00:00:00Z", "end")
    for line in (fleet / "events.jsonl").read_bytes().splitlines():
        event = orjson.loads(line)
        if event["type"] == "session_start":
            ts = parse_ts(event["ts"], "ts")
            starts[event["session_id"]] = (event["id_tag"].upper(), event["station_id"], ts)
        elif event["type"] == "session_stop":
            stops[event["session_id"]] = parse_ts(event["ts"], "ts")
    by_card = defaultdict(list)
    for sid, (tag, station, start) in starts.items():
        by_card[tag].append((sid, station, start, stops.get(sid, end_ns)))
    expected = set()
    for group in by_card.values():
        for sid, station, start, stop in group:
            for _, other_station, other_start, other_stop in group:
                # whole-minute stamps may move a start or stop by under a minute
                if (
                    other_station != station
                    and min(stop, other_stop) - max(start, other_start) > 60 * 10**9
                ):
                    expected.add(sid)
    labels = [orjson.loads(line) for line in (fleet / "labels.jsonl").read_bytes().splitlines()]
    labeled = {x["session_id"] for x in labels if x["kind"] == "concurrent_id_tag"}
    assert labeled == expected
    assert len(labeled) >= 6
    stations = {s.station_id: s.site_id for s in read_stations(fleet / "stations.csv").stations}
    same_site = [
        sid
        for sid in labeled
        for tag, station, _ in [starts[sid]]
        if any(
            o != sid and stations[starts[o][1]] == stations[station] and starts[o][1] != station
            for o, *_ in by_card[tag]
        )
    ]
    assert same_site, "no driver moved to the next charger at one site"
