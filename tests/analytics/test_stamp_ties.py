"""Readings that share a stamp (stations stamping whole seconds or minutes): ordered by their
registers where that fits between the stamps around them, else as they arrived
(``analytics.detectors.stamp_order``), on the file path as in the window's assembly."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from analytics.detectors.stamp_order import stamp_order
from analytics.pipeline import detect_stream
from chargewatch.events import EventDecoder
from chargewatch.flags import Flag
from ingest.pseudonym import Pseudonymizer

NAN = float("nan")


def order_of(
    t: list[int],
    register: list[float],
    row: list[int] | None = None,
    soc: list[float] | None = None,
) -> list[int]:
    n = len(t)
    rows = np.asarray(row if row is not None else [0] * n, dtype=np.int64)
    keys = [np.asarray(register, dtype=np.float64)]
    if soc is not None:
        keys.append(np.asarray(soc, dtype=np.float64))
    out = stamp_order(rows, np.asarray(t, dtype=np.int64), keys, np.arange(n, dtype=np.int64))
    return [int(i) for i in out]


def test_without_ties_the_order_is_by_time_then_arrival() -> None:
    assert order_of([3, 1, 2], [30.0, 10.0, 20.0]) == [1, 2, 0]


def test_a_reading_sent_late_within_its_stamp_goes_where_its_register_fits() -> None:
    # arrival: 100 at t=1, then 130 and 120 both stamped t=2, then 140 at t=3
    assert order_of([1, 2, 2, 3], [100.0, 130.0, 120.0, 140.0]) == [0, 2, 1, 3]


def test_a_register_that_fell_keeps_the_order_of_arrival() -> None:
    # 150 then 120 within t=2, after 130 at t=1: sorted, 120 would still fall below 130 and
    # 150 would "jump" back: the group holds a fall, so arrival order stands
    assert order_of([1, 2, 2, 3], [130.0, 150.0, 120.0, 125.0]) == [0, 1, 2, 3]
    # the same when the fall shows against the stamp after: 200 then 160 before 170
    assert order_of([1, 2, 2, 3], [100.0, 200.0, 160.0, 170.0]) == [0, 1, 2, 3]


def test_the_soc_orders_a_group_whose_registers_do_not_fit() -> None:
    # within t=2 the register fell (150 then 120) and the SoC rose (40 then 41): by SoC
    assert order_of([1, 2, 2, 3], [130.0, 150.0, 120.0, 125.0], soc=[39, 41, 40, 42]) == [
        0,
        2,
        1,
        3,
    ]


def test_an_order_that_makes_the_soc_fall_is_not_taken() -> None:
    # the register fell 3 within t=2 (116 then 113) and still fits between 100 and 125; the
    # SoC rose (73 then 75) in the order of arrival, which is the order measured
    assert order_of([1, 2, 2, 3], [100.0, 116.0, 113.0, 125.0], soc=[70, 73, 75, 77]) == [
        0,
        1,
        2,
        3,
    ]


def test_readings_without_a_register_come_after_and_keep_arrival_order() -> None:
    assert order_of([1, 2, 2, 2, 3], [100.0, NAN, 120.0, NAN, 140.0]) == [0, 2, 1, 3, 4]


def test_rows_are_ordered_each_on_their_own() -> None:
    # row 1's registers are far below row 0's: nothing of one row bounds the other
    t = [2, 2, 1, 2, 2, 3]
    register = [500.0, 400.0, 5.0, 9.0, 7.0, 10.0]
    row = [0, 0, 1, 1, 1, 1]
    assert order_of(t, register, row) == [1, 0, 2, 4, 3, 5]


# -- through detection ------------------------------------------------------------------------

T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def _stamp(s: float) -> str:
    """A whole-minute stamp, as a station that drops the seconds writes it."""
    moment = T0 + timedelta(seconds=s)
    return moment.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _session(
    session_id: str,
    station: str,
    registers: list[float],
    order: list[int] | None = None,
    soc: list[float] | None = None,
) -> list[dict[str, Any]]:
    """A 22 kW session read every 20 s (three readings a minute, each stamped to the minute),
    its readings sent in ``order`` (default: as measured); with ``soc``, the SoC in each
    reading and the register only at start and stop (as many stations send it)."""
    base = {"station_id": station, "connector_id": 1, "session_id": session_id}
    readings: list[dict[str, Any]] = [
        {
            **base,
            "type": "reading",
            "ts": _stamp(20.0 * (k + 1)),
            "power_w": 22_000.0,
            "power_offered_w": 22_000.0,
        }
        for k in range(len(registers))
    ]
    for k, reading in enumerate(readings):
        if soc is None:
            reading["energy_wh"] = registers[k]
        else:
            reading["soc_pct"] = soc[k]
    sent = [readings[k] for k in (order or range(len(readings)))]
    end_s = 20.0 * (len(registers) + 1)
    return [
        {
            **base,
            "type": "session_start",
            "ts": _stamp(0.0),
            "id_tag": session_id,
            "meter_start_wh": registers[0],
        },
        {
            "station_id": station,
            "connector_id": 1,
            "type": "status",
            "ts": _stamp(1.0),
            "status": "Charging",
        },
        *sent,
        {
            **base,
            "type": "session_stop",
            "ts": _stamp(end_s),
            "meter_stop_wh": registers[-1],
            "reason": "EVDisconnected",
        },
    ]


def _flags(events: list[dict[str, Any]]) -> list[Flag]:
    text = "".join(json.dumps(e) + "\n" for e in events).encode()
    flags, report = detect_stream(io.BytesIO(text), decoder=EventDecoder(Pseudonymizer(b"k" * 32)))
    assert report.rejected == 0
    return flags


def _registers(n: int, fall_at: int | None = None, fall_wh: float = 0.0) -> list[float]:
    """Registers of 22 kW for 20 s a reading (122 Wh), less ``fall_wh`` from ``fall_at`` on."""
    out = [1_000_000.0 + round(22_000.0 * 20.0 * k / 3600.0) for k in range(n)]
    if fall_at is not None:
        out[fall_at:] = [v - fall_wh for v in out[fall_at:]]
    return out


def test_a_late_reading_within_a_minute_is_not_a_register_running_backwards() -> None:
    n = 60
    order = list(range(n))
    order[30], order[31] = 31, 30  # 09:10:00-09:10:40 (29-31): the second sent after the third
    flags = _flags(_session("late", "ST-1", _registers(n), order))
    assert not [f for f in flags if f.kind in ("meter_backwards", "meter_jump")], flags


def test_a_register_that_falls_within_a_minute_is_still_a_fall() -> None:
    # 09:11:00-09:11:40 (32-34): the second reading is 1.2 kWh lower, and the register goes on
    # from there (sorted within the minute, it would read as a jump, then a fall)
    flags = _flags(_session("fell", "ST-2", _registers(60, fall_at=33, fall_wh=1_200.0)))
    kinds = {f.kind for f in flags}
    assert "meter_backwards" in kinds and "meter_jump" not in kinds, flags


def test_a_soc_that_falls_within_a_minute_while_power_flows_is_seen() -> None:
    # 22 kW on a 60 kWh car: 0.12 % of SoC a reading; at 09:11:20 the SoC reads 25 points
    # lower and goes on from there; the stamps put 0 s between the two readings, and the
    # power in both says energy flowed (an independently written fleet stamped to the minute
    # missed half of such falls)
    n = 60
    soc = [40.0 + round(0.12 * k, 1) for k in range(n)]
    soc[33:] = [v - 25.0 for v in soc[33:]]
    flags = _flags(_session("soc", "ST-3", _registers(n), soc=soc))
    assert "soc_inconsistent" in {f.kind for f in flags}, flags


def test_a_register_that_falls_part_of_a_step_within_a_minute_is_still_a_fall() -> None:
    # 09:11:20 (33) reads 58 Wh below 09:11:00, then the register goes on as before: sorted
    # within the minute it would fit between the minutes around it, but with steps of 64, 58,
    # 244 Wh where the readings around rise by 122 a reading: no late reading gives that pace
    # (an independently written fleet with every station stamping whole minutes, seed 343,
    # ec600417: -58 Wh among steps of 31 Wh, unseen)
    registers = _registers(60)
    registers[33] = registers[32] - 58.0
    flags = _flags(_session("glitch", "ST-4", registers))
    assert "meter_backwards" in {f.kind for f in flags}, flags


def test_a_coarse_register_sent_late_within_its_stamp_is_still_sorted() -> None:
    # a meter counting in 100 Wh read four times a minute rises by 0 or 100 Wh a reading: its
    # pace (100 Wh) is one step of the meter, so sorted values may repeat
    t = [1] * 4 + [2] * 4 + [3] * 4
    arrived = [1000.0, 1000.0, 1100.0, 1100.0, 1200.0, 1300.0, 1200.0, 1300.0]
    arrived += [1400.0, 1400.0, 1500.0, 1500.0]
    assert order_of(t, arrived) == [0, 1, 2, 3, 4, 6, 5, 7, 8, 9, 10, 11]


def test_a_reading_sent_late_among_regular_steps_is_sorted_in() -> None:
    # 31 Wh a reading, four readings a minute; the third of minute 2 arrived after the fourth
    t = [1] * 4 + [2] * 4 + [3] * 4
    registers = [1000.0 + 31.0 * k for k in range(12)]
    arrived = [*registers[:6], registers[7], registers[6], *registers[8:]]
    assert order_of(t, arrived) == [0, 1, 2, 3, 4, 5, 7, 6, 8, 9, 10, 11]


def test_an_end_reading_within_the_second_of_a_periodic_one_is_sorted_in() -> None:
    # readings every 30 s stamped to the second, 495 Wh a step; the transaction's end reading
    # shares the last periodic one's second, taken 0.6 s before it (9 Wh lower) and sent after
    # it. The readings around share no stamp: the pace of their steps says nothing of two
    # readings one moment apart (outside fleet seed 10, TRX-0070-00027: "0.009 kWh backwards"
    # on a normal session)
    t = [30 * k for k in range(10)] + [270]
    registers = [1000.0 + 495.0 * k for k in range(10)] + [1000.0 + 495.0 * 9 - 9.2]
    assert order_of(t, registers) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 9]
    # ... also with the padding of a wider batch after it (one stamp, no values: as prepared
    # sorts its rows), which shares a stamp but is no neighbour
    padded = order_of(t + [10**12] * 5, registers + [float("nan")] * 5)
    assert padded == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 9, 11, 12, 13, 14, 15]
