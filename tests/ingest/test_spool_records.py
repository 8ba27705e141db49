"""The spool's record format read back through damage: one bad byte costs one record, a torn
append is a tail, and nothing is ever read past the end given."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from ingest.spool_records import HEADER, Damage, Record, Tail, encode, encode_payload, scan

# Tag values with multi-byte UTF-8, as station ids may have: the payload is UTF-8 text.
station = st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), min_size=1, max_size=8)
lines = st.lists(
    st.builds(
        lambda s, p, t: f"reading,connector_id=1,station_id={s} power_w={p} {t}",
        station,
        st.floats(0, 1e6, allow_nan=False),
        st.integers(0, 2**62),
    ),
    min_size=1,
    max_size=12,
)
batches = st.lists(lines, min_size=1, max_size=6)


def segment(records: list[list[str]]) -> tuple[bytes, list[tuple[int, int]]]:
    """The records one after another, and where each lies."""
    data, spans = b"", []
    for record_lines in records:
        record, _ = encode(record_lines)
        spans.append((len(data), len(data) + len(record)))
        data += record
    return data, spans


def legacy(record_lines: list[str]) -> bytes:
    """A record as segments written before the magic held them."""
    payload = ("\n".join(record_lines) + "\n").encode()
    header = f"B {len(payload)} {len(record_lines)} {zlib.crc32(payload):08x}\n"
    return header.encode() + payload


@given(batches, st.data())
def test_any_changed_byte_costs_exactly_its_record(
    records: list[list[str]], data: st.DataObject
) -> None:
    buf, spans = segment(records)
    hit = data.draw(st.integers(0, len(records) - 1), label="record")
    start, end = spans[hit]
    position = data.draw(st.integers(start, end - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != buf[position]), label="value")
    damaged = buf[:position] + bytes([value]) + buf[position + 1 :]
    items = list(scan(damaged, 0, len(damaged)))
    assert [i.lines for i in items if isinstance(i, Record)] == [
        r for k, r in enumerate(records) if k != hit
    ]
    [damage] = [i for i in items if not isinstance(i, Record)]
    assert isinstance(damage, Damage)
    assert (damage.start, damage.end) == (start, end)


@given(batches, st.data())
def test_a_record_cut_short_at_the_end_is_a_torn_tail(
    records: list[list[str]], data: st.DataObject
) -> None:
    buf, spans = segment(records)
    start, end = spans[-1]
    cut = data.draw(st.integers(start + 1, end - 1))
    items = list(scan(buf[:cut], 0, cut))
    assert [i.lines for i in items if isinstance(i, Record)] == records[:-1]
    assert items[-1] == Tail(start, cut)


@given(st.binary(max_size=400), batches, st.integers(0, 400))
def test_any_bytes_are_tiled_without_reading_past_the_end(
    garbage: bytes, records: list[list[str]], at: int
) -> None:
    buf, _ = segment(records)
    mixed = buf[:at] + garbage + buf[at:]
    end = len(mixed) - 3 if len(mixed) > 3 else len(mixed)
    items = list(scan(mixed + b"\xffCW1" * 4, 0, end))  # bytes past ``end`` must not count
    position = 0
    for item in items:
        assert item.start == position < item.end <= end
        position = item.end
    assert position == end


def test_a_damaged_length_is_not_trusted() -> None:
    records = [[f"reading,station_id=S power_w={i} {i}"] * 3 for i in range(3)]
    buf, spans = segment(records)
    start, end = spans[1]
    huge = (2**32 - 1).to_bytes(4, "little")
    damaged = buf[: start + 4] + huge + buf[start + 8 :]
    items = list(scan(damaged, 0, len(damaged)))
    assert [i.lines for i in items if isinstance(i, Record)] == [records[0], records[2]]
    assert Damage(start, end, None, None) in items
    assert HEADER.size == 20


def test_legacy_records_are_read_and_resynchronized_on() -> None:
    old = [legacy([f"reading,station_id=S power_w={i} {i}"] * 2) for i in range(4)]
    new, _ = encode(["reading,station_id=S power_w=9 9"])
    buf = b"".join(old) + new
    assert len([i for i in scan(buf, 0, len(buf)) if isinstance(i, Record)]) == 5
    at = len(old[0]) + len(old[1]) // 2
    damaged = buf[:at] + b"#" + buf[at + 1 :]
    items = list(scan(damaged, 0, len(damaged)))
    assert [type(i) for i in items] == [Record, Damage, Record, Record, Record]
    assert items[1].start == len(old[0]) and items[1].end == len(old[0]) + len(old[1])


@given(lines)
def test_a_ready_payload_is_the_record_its_lines_make(record_lines: list[str]) -> None:
    payload = ("\n".join(record_lines) + "\n").encode()
    record, size = encode_payload(payload, len(record_lines))
    assert (record, size) == encode(record_lines)
    [item] = scan(record, 0, len(record))
    assert isinstance(item, Record)
    assert item.payload == payload
    assert item.lines == record_lines


def test_a_payload_whose_lines_are_not_its_count_is_damage() -> None:
    payload = b"reading,station_id=S power_w=1 1\nreading,station_id=S power_w=2 2\n"
    for count in (1, 3):
        record, _ = encode_payload(payload, count)
        assert [type(item) for item in scan(record, 0, len(record))] == [Damage]
