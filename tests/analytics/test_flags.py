"""Flag records: from detector results, and their JSON Lines and line-protocol forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from analytics.assemble import assemble
from analytics.batch import NO_TIME
from analytics.detectors.base import KindResult
from analytics.flags import flags_from_results
from chargewatch.errors import EventError
from chargewatch.events import Event
from chargewatch.flags import Flag, decode_flag, flags_to_lines, read_flags, write_flags

from ._support import CONTRACT_KEYS, at, numbered, reading, start, stop


def test_one_flag_per_flagged_row_and_kind() -> None:
    events: list[Event] = [
        start(0),
        reading(1, energy_wh=5.0),
        stop(4),
        start(10, session="S2"),
        reading(11, session="S2"),
        stop(12, session="S2"),
        reading(30, None, energy_wh=9.0),
    ]
    batch = assemble(numbered(events))
    result = KindResult.empty("stall", batch.n_sessions)
    result.flagged[[0, 2]] = True
    result.score[[0, 2]] = [0.75, np.nan]  # NaN on a flagged row is read as certain
    result.start_ns[0], result.end_ns[0] = at(1), at(3)
    result.reason[0] = "no power for 2 min"
    flags = flags_from_results(batch, [result, KindResult.empty("data_gap", batch.n_sessions)])
    assert flags == [
        Flag("S1", "ST-1", 1, "stall", 0.75, at(1), at(3), "no power for 2 min"),
        # no time of its own: the row's span; no reason: the kind
        Flag(None, "ST-1", 1, "stall", 1.0, at(30), at(30), "stall"),
    ]
    assert NO_TIME not in (f.start_ns for f in flags)


def test_json_lines_follow_the_contract_and_round_trip(tmp_path: Path) -> None:
    flags = [
        Flag("S1", "ST-1", 2, "meter_jump", 0.5, at(1), at(2), "register +9 kWh in 10 s"),
        Flag(None, "ST 2", 1, "unauthorized_energy", 1.0, at(3), at(4), "1.2 kWh, no session"),
    ]
    path = tmp_path / "flags.jsonl"
    assert write_flags(path, flags) == 2
    lines = path.read_bytes().splitlines()
    first = orjson.loads(lines[0])
    assert list(first) == CONTRACT_KEYS
    assert first == {
        "session_id": "S1",
        "station_id": "ST-1",
        "connector_id": 2,
        "kind": "meter_jump",
        "score": 0.5,
        "start": "2026-11-24T08:01:00.000Z",
        "end": "2026-11-24T08:02:00.000Z",
        "reason": "register +9 kWh in 10 s",
    }
    assert orjson.loads(lines[1])["session_id"] is None
    assert read_flags(path) == flags


@pytest.mark.parametrize(
    "change",
    [{"score": 1.5}, {"connector_id": "1"}, {"start": "yesterday"}, {"kind": None}],
)
def test_a_bad_flag_line_is_refused_with_its_field(change: dict[str, object]) -> None:
    good = Flag("S1", "ST-1", 1, "stall", 0.5, at(1), at(2), "r").to_json()
    with pytest.raises(EventError) as caught:
        decode_flag({**good, **change})
    assert caught.value.field == next(iter(change))


def test_line_protocol_is_stamped_with_the_start() -> None:
    flag = Flag(None, "ST-1", 1, "stall", 0.5, at(1), at(2), 'say "why"')
    (line,) = flags_to_lines([flag])
    assert line == (
        "flag,connector_id=1,kind=stall,station_id=ST-1 "
        f"score=0.5,start_ns={at(1)}i,end_ns={at(2)}i,duration_ns={60 * 10**9}i,"
        f'reason="say \\"why\\"" {at(1)}'
    )
