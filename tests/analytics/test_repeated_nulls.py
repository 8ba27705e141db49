"""A key written twice with ``null`` both times is read alike by both paths, so the columnar
path takes it; a key given a value and then ``null`` (or the reverse) stays per-event, where the
last value counts (``chargewatch.columns._repeats_a_key``)."""

from __future__ import annotations

import io

import pytest

from analytics.pipeline import DetectReport, decode_chunks, decode_events
from chargewatch.events import EventDecoder, Reading
from ingest.pseudonym import Pseudonymizer

_HEAD = b'"type":"reading","ts":"2026-11-23T01:00:00Z","connector_id":1,"session_id":"S"'
_PLAIN = b'{"station_id":"A",' + _HEAD + b',"power_w":7}'


@pytest.mark.parametrize(
    ("line", "columnar"),
    [
        (b'{"station_id":"A",' + _HEAD + b',"soc_pct":null,"soc_pct" :\tnull,"power_w":3}', True),
        (b'{"station_id":"A",' + _HEAD + b',"power_w":null,"x":{"power_w":null}}', True),
        (b'{"station_id":"A",' + _HEAD + b',"power_w":1,"power_w":null,"energy_wh":5}', False),
        (b'{"station_id":"A",' + _HEAD + b',"power_w":null,"power_w":1}', False),
        (b'{"station_id":"A",' + _HEAD + b',"power_w":1,"x":{"power_w":null}}', False),
    ],
)
def test_nulls_written_twice_on_both_paths(line: bytes, columnar: bool) -> None:
    data = b"\n".join([_PLAIN, line, _PLAIN]) + b"\n"
    decoder = EventDecoder(Pseudonymizer(b"k" * 32))
    expected = [event for _, event in decode_events(io.BytesIO(data), decoder, DetectReport())]
    (chunk,) = decode_chunks(io.BytesIO(data), decoder, DetectReport())
    assert len(chunk.readings) == (3 if columnar else 2)
    if not columnar:
        assert [number for number, _ in chunk.events] == [2]
        assert chunk.events[0][1] == expected[1]
        return
    columns = chunk.readings
    row = int(list(columns.arrival).index(2))
    event = expected[1]
    assert isinstance(event, Reading)
    got = [float(values[row]) for values in columns.values]
    want = [float("nan") if v is None else float(v) for v in event[4:]]
    assert [repr(x) for x in got] == [repr(x) for x in want]
    assert int(columns.ts_ns[row]) == event.ts_ns
