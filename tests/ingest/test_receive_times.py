"""Receive times of batches from several senders at once (``ReceiveClock.stream_us`` through
``ChunkEncoder``): a reading is indexed by its receive time (``reading_rx``) when its own
station's clock is off or it arrived late, never because another sender's batches are ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import orjson

from chargewatch.events import EventDecoder
from chargewatch.schema import RX_MEASUREMENT
from ingest.encode import ChunkEncoder

START = datetime(2026, 11, 23, 8, tzinfo=UTC)
STATIONS = 10
BATCH_S = 60  # each batch holds a minute of its sender's stations, a reading per 6 s each


def encoder() -> ChunkEncoder:
    return ChunkEncoder(EventDecoder(lambda tag: f"p-{len(tag)}"))


def reading(station: str, at: datetime, energy_wh: float) -> bytes:
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps(
        {
            "type": "reading",
            "ts": stamp,
            "station_id": station,
            "connector_id": 1,
            "session_id": None,
            "energy_wh": energy_wh,
            "power_w": 0.0,
        }
    )


def batch(
    sender: str, minute: int, lag: timedelta, *, wrong: timedelta | None = None
) -> list[bytes]:
    """A minute of ``sender``'s stations, stamped ``lag`` behind the other sender; station 0's
    clock is ``wrong`` by that much when given."""
    lines = []
    for step in range(BATCH_S // 6):
        for k in range(STATIONS):
            at = START + timedelta(minutes=minute, seconds=6 * step) - lag
            if wrong is not None and k == 0:
                at += wrong
            lines.append(reading(f"{sender}-{k}", at, 1000.0 * minute + step))
    return lines


def received(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(RX_MEASUREMENT)]


def test_a_sender_an_hour_behind_another_is_not_received_late() -> None:
    """Two back offices post their own stations through one worker; one is an hour behind
    (catching up). Neither's readings are far from their receive times."""
    worker = encoder()
    lagging = timedelta(hours=1)
    for minute in range(10):
        for sender, lag in (("ahead", timedelta(0)), ("behind", lagging)):
            numbered = list(enumerate(batch(sender, minute, lag), start=1))
            chunk = worker.encode_lines(numbered)
            assert chunk.accepted_by_type["reading"] == len(numbered)
            assert received(chunk.lines) == [], (sender, minute)


def test_a_wrong_clock_in_the_lagging_sender_is_still_received_far_off() -> None:
    worker = encoder()
    far: list[str] = []
    for minute in range(10):
        worker.encode_lines(list(enumerate(batch("ahead", minute, timedelta(0)), start=1)))
        lines = batch("behind", minute, timedelta(hours=1), wrong=timedelta(days=-400))
        far += received(worker.encode_lines(list(enumerate(lines, start=1))).lines)
    assert len(far) == 10 * (BATCH_S // 6)  # every reading of station 0, and only those
    assert all("station_id=behind-0 " in line for line in far)


def test_bodies_encoded_together_keep_their_own_receive_times() -> None:
    """Bodies of two senders that waited for a worker together are one chunk: each is
    estimated from its own stamps (``streams``), not from the stamps of the other."""
    worker = encoder()
    for minute in range(5):
        ahead = batch("ahead", minute, timedelta(0))
        behind = batch("behind", minute, timedelta(hours=1))
        numbered = list(enumerate(ahead + behind))
        chunk = worker.encode_lines(numbered, streams=[0, len(ahead)])
        assert received(chunk.lines) == [], minute


def test_readings_a_station_held_back_are_received_late() -> None:
    """In one sender's stream, 5 minutes of one station's readings come 10 minutes late: its
    receive times never go back, so those readings lie outside the band, and only those."""
    worker = encoder()
    held = [reading("ahead-0", START + timedelta(seconds=6 * s), 1.0 * s) for s in range(50)]
    late: list[str] = []
    for minute in range(15):
        lines = batch("ahead", minute, timedelta(0))
        if minute < 5:  # station 0's readings of these minutes are held back
            lines = [line for line in lines if b'"ahead-0"' not in line]
        if minute == 12:
            lines = held + lines
        late += received(worker.encode_lines(list(enumerate(lines, start=1))).lines)
    assert len(late) == len(held)
    assert all("station_id=ahead-0 " in line for line in late)


def test_a_sparse_file_in_time_order_is_received_at_its_own_stamps() -> None:
    # a small fleet's week: events hours apart, in time order; each is received at its own
    # stamp, so none is indexed by receive time (a median shared by a block of rows was hours
    # off and moved readings out of the windows that judge them)
    from chargewatch.schema import ReceiveClock

    stamps = np.array([(START + timedelta(hours=3 * k)).timestamp() for k in range(200)])
    ts_ns = (stamps * 1e9).astype(np.int64)
    clock = ReceiveClock(wall_ns=lambda: int(ts_ns[-1]) + 10**12)
    rx_us = clock.stream_us(ts_ns)
    # past the first half window (a new stream starts from its first stamps' median)
    assert np.array_equal(rx_us[60:], ts_ns[60:] // 1000)
