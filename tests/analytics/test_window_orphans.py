"""Energy outside sessions on a connector that never falls silent: a window judges it once its
meter has been at rest for ``ORPHAN_GAP_NS``, as the file path does at the end of its data.

OCPP stations send clock-aligned readings (``Sample.Clock``, often every 15 minutes) whether or
not a session is open. Timed from its last reading, an orphan segment on such a connector would
never end, and the scheduled job would never judge energy that flowed on it (seen on a simulated
day: the file path flagged three unauthorized_energy segments, ``detect --since/--until`` two).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import orjson
import pytest

from analytics.pipeline import detect_stream
from analytics.read.partition import ReadingCache
from analytics.window import detect_window
from chargewatch.events import EventDecoder, parse_ts
from chargewatch.flags import Flag
from chargewatch.influx import BatchWriter, InfluxClient
from ingest.files import ingest_stream
from ingest.pseudonym import Pseudonymizer

DAY = "2026-11-23"
KEY = b"window-orphans-key-0123456789abc"
HOUR_NS = 3600 * 1_000_000_000


def reading(hh: int, mm: int, energy_wh: float, power_w: float) -> dict[str, object]:
    return {
        "type": "reading",
        "ts": f"{DAY}T{hh:02d}:{mm:02d}:00Z",
        "station_id": "ST-1",
        "connector_id": 1,
        "session_id": None,
        "energy_wh": energy_wh,
        "power_w": power_w,
    }


def day_of_readings() -> bytes:
    """An idle meter read every 15 minutes all day, and 30 minutes of 7.2 kW at noon with no
    session open (3.6 kWh nobody authorized)."""
    events = []
    energy = 1_000_000.0
    for minute in range(0, 24 * 60, 15):
        hh, mm = divmod(minute, 60)
        if hh == 12 and mm < 30:
            for sub in range(0, 15):  # a reading a minute while it flows
                events.append(reading(hh, mm + sub, energy, 7200.0))
                energy += 120.0
        else:
            events.append(reading(hh, mm, energy, 0.0))
    return b"\n".join(orjson.dumps(e) for e in events) + b"\n"


@pytest.fixture
def loaded(influx: InfluxClient) -> Iterator[InfluxClient]:
    with BatchWriter(influx) as writer:
        ingest_stream(
            io.BytesIO(day_of_readings()),
            decoder=EventDecoder(Pseudonymizer(KEY)),
            sink=writer,
            on_reject=lambda rejection: pytest.fail(str(rejection)),
        )
    yield influx


def orphan_energy(flags: list[Flag]) -> list[tuple[str, int, str]]:
    return [(f.station_id, f.connector_id, f.kind) for f in flags if f.session_id is None]


def test_the_file_path_flags_the_energy() -> None:
    flags, _ = detect_stream(
        io.BytesIO(day_of_readings()), decoder=EventDecoder(Pseudonymizer(KEY))
    )
    assert orphan_energy(flags) == [("ST-1", 1, "unauthorized_energy")]


def test_a_window_over_the_day_flags_it_though_readings_never_stop(loaded: InfluxClient) -> None:
    since = parse_ts(f"{DAY}T00:00:00Z")
    flags, _ = detect_window(loaded, since, since + 24 * HOUR_NS)
    assert orphan_energy(flags) == [("ST-1", 1, "unauthorized_energy")]
    file_flags, _ = detect_stream(
        io.BytesIO(day_of_readings()), decoder=EventDecoder(Pseudonymizer(KEY))
    )
    assert [f.to_json() for f in flags] == [f.to_json() for f in file_flags]


def test_hourly_windows_flag_it_once_when_the_meter_has_rested(loaded: InfluxClient) -> None:
    """Windows without a cache (each a cold start): the segment began before the window that
    judges it, on a connector no session used, and is read back from the look-back."""
    since = parse_ts(f"{DAY}T00:00:00Z")
    found = {}
    for hour in range(24):
        begin = since + hour * HOUR_NS
        flags, _ = detect_window(loaded, begin, begin + HOUR_NS)
        if orphan_energy(flags):
            found[hour] = orphan_energy(flags)
    # the flow ends at 12:30 and the meter rests from then on: over 30 minutes later, 13:00
    assert found == {13: [("ST-1", 1, "unauthorized_energy")]}


def test_the_jobs_windows_flag_it_once_with_their_cache(loaded: InfluxClient) -> None:
    """Five-minute windows as ``serve`` runs them, each partition's cache handed on."""
    since = parse_ts(f"{DAY}T11:00:00Z")
    step = 5 * 60 * 1_000_000_000
    caches: dict[tuple[str, ...], ReadingCache] = {}
    found = {}
    for k in range(36):
        begin = since + k * step
        flags, _ = detect_window(loaded, begin, begin + step, caches=caches)
        if orphan_energy(flags):
            found[k * 5] = orphan_energy(flags)
    assert found == {120: [("ST-1", 1, "unauthorized_energy")]}  # the window from 13:00
