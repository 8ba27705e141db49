"""Stations write their messages each in their own valid style: the variety changes how the
events are written, never what they say."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from chargewatch.events import READING_RANGES, Event, EventDecoder, Reading, SessionStop, parse_ts
from simulator import SimulationConfig, simulate
from simulator.output import MessageStyle, plain_event

START = datetime(2026, 11, 23, tzinfo=UTC)
decoder = EventDecoder(lambda tag: f"p-{tag}")


def fleet(folder: Path, *, variety: bool) -> tuple[list[bytes], list[dict[str, Any]]]:
    config = SimulationConfig(
        stations=40, hours=12.0, seed=8, start=START, anomaly_rate=0.2, message_variety=variety
    )
    folder.mkdir()
    simulate(config, folder / "events.jsonl", folder / "labels.jsonl")
    labels = [orjson.loads(line) for line in (folder / "labels.jsonl").read_bytes().splitlines()]
    return (folder / "events.jsonl").read_bytes().splitlines(), labels


@pytest.fixture(scope="module")
def fleets(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[tuple[list[bytes], list[dict[str, Any]]], tuple[list[bytes], list[dict[str, Any]]]]:
    folder = tmp_path_factory.mktemp("formats")
    return fleet(folder / "plain", variety=False), fleet(folder / "mixed", variety=True)


def test_one_fleet_mixes_every_style(fleets: Any) -> None:
    (_plain, _), (mixed, _) = fleets
    events = [orjson.loads(line) for line in mixed]
    readings = [e for e in events if e["type"] == "reading"]
    seen: Counter[str] = Counter()
    for event in readings:
        seen["string numbers"] += isinstance(event.get("energy_wh"), str)
        seen["json numbers"] += isinstance(event.get("energy_wh"), int | float)
        seen["string connector"] += isinstance(event["connector_id"], str)
        seen["null"] += any(event.get(key, 0) is None for key in READING_RANGES)
        seen["extra keys"] += "seq" in event
        seen["key order"] += next(iter(event)) != "type"
    for event in events:
        ts = event["ts"]
        seen["Z"] += ts.endswith("Z")
        seen["+00:00"] += ts.endswith("+00:00")
        seen["+05:30"] += ts.endswith("+05:30")
        seen["-05:00"] += ts.endswith("-05:00")
        fraction = ts[19:].split("+")[0].split("-")[0].rstrip("Z")
        seen[f"{max(len(fraction) - 1, 0)} digits"] += 1
        session_id = event.get("session_id") or ""
        seen["uuid"] += len(session_id) == 36 and session_id.count("-") == 4
        seen["integer id"] += session_id.isdigit()
        seen["plain id"] += session_id.startswith("CW-")
    assert all(seen[name] > 0 for name in _STYLES), {name: seen[name] for name in _STYLES}


_STYLES = (
    "string numbers",
    "json numbers",
    "string connector",
    "null",
    "extra keys",
    "key order",
    "Z",
    "+00:00",
    "+05:30",
    "-05:00",
    "0 digits",
    "3 digits",
    "6 digits",
    "uuid",
    "integer id",
    "plain id",
)


def streams(lines: list[bytes]) -> dict[tuple[Any, ...], list[Event]]:
    """Each connector's events by type and session (sessions counted in order of first sight
    on the connector, so the two fleets' ids need not match): late uploads move readings in
    the file, never within such a stream."""
    out: dict[tuple[Any, ...], list[Event]] = {}
    ordinal: dict[str, int] = {}
    seen_on: Counter[tuple[str, Any]] = Counter()
    for raw in lines:
        event = decoder.decode_line(raw)
        connector = getattr(event, "connector_id", None)
        session_id = getattr(event, "session_id", None)
        if session_id is not None and session_id not in ordinal:
            ordinal[session_id] = seen_on[(event.station_id, connector)]
            seen_on[(event.station_id, connector)] += 1
        key = (event.station_id, connector, type(event).__name__, ordinal.get(session_id or ""))
        out.setdefault(key, []).append(event)
    return out


def test_every_line_is_valid_and_says_what_the_plain_line_says(fleets: Any) -> None:
    (plain, plain_labels), (mixed, labels) = fleets
    assert len(plain) == len(mixed)
    want_streams, got_streams = streams(plain), streams(mixed)
    assert want_streams.keys() == got_streams.keys()
    renamed: dict[str, str] = {}
    for key, wanted in want_streams.items():
        for want, got in zip(wanted, got_streams[key], strict=True):
            # stamps: whole seconds cut the milliseconds; microsecond clocks add less than one
            assert -1_000_000_000 < got.ts_ns - want.ts_ns < 1_000_000, got
            session_id = getattr(want, "session_id", None)
            same: tuple[Any, ...] = got._replace(ts_ns=want.ts_ns)
            if session_id is not None:
                renamed.setdefault(session_id, getattr(got, "session_id", ""))
                assert renamed[session_id] == getattr(got, "session_id", ""), got
                same = got._replace(ts_ns=want.ts_ns, session_id=session_id)  # type: ignore[call-arg]
            assert same == want, got
    assert len(set(renamed.values())) == len(renamed)  # still one id per session
    # labels name the sessions by the ids the events carry
    assert len(labels) == len(plain_labels) > 0
    for label, plain_label in zip(labels, plain_labels, strict=True):
        original = plain_label["session_id"]
        assert label["session_id"] == (None if original is None else renamed[original])
        assert (label["start"], label["end"]) == (plain_label["start"], plain_label["end"])


def test_some_stations_upload_readings_after_their_session_stopped(fleets: Any) -> None:
    (plain, _), (mixed, _) = fleets
    assert late_readings(plain) == 0
    assert late_readings(mixed) > 0


def late_readings(lines: list[bytes]) -> int:
    stopped: set[str] = set()
    late = 0
    for raw in lines:
        event = decoder.decode_line(raw)
        if isinstance(event, SessionStop):
            stopped.add(event.session_id)
        elif isinstance(event, Reading) and event.session_id in stopped:
            late += 1
    return late


def test_the_variety_is_the_same_for_the_same_seed(tmp_path: Path, fleets: Any) -> None:
    (_plain, _), (mixed, labels) = fleets
    again, again_labels = fleet(tmp_path / "again", variety=True)
    assert again == mixed and again_labels == labels


def test_plain_event_gives_numbers_back_for_typed_messages() -> None:
    style = MessageStyle(numbers_as_strings=True, connector_as_string=True, nulls=True)
    line = orjson.dumps(
        {
            "type": "reading",
            "ts": "2026-11-23T10:00:00.250Z",
            "station_id": "S",
            "connector_id": 2,
            "energy_wh": 1200,
            "power_w": 7400.5,
        }
    )
    event = orjson.loads(style.restyle(line))
    assert event["connector_id"] == "2" and event["power_w"] == "7400.5"
    assert event["soc_pct"] is None
    plain = plain_event(event)
    assert plain["connector_id"] == 2 and plain["energy_wh"] == 1200
    assert plain["power_w"] == 7400.5 and "soc_pct" not in plain
    reading = decoder.decode(event)
    assert isinstance(reading, Reading) and reading.ts_ns == parse_ts("2026-11-23T10:00:00.250Z")
