"""Event files as other tools write them: a UTF-8 byte order mark, gzip."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ingest.files import open_events

LINE = b'{"type":"station","event":"heartbeat","ts":"2026-11-16T10:00:00Z","station_id":"S"}\n'


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("bom", [False, True])
def test_a_leading_byte_order_mark_is_no_part_of_the_first_line(
    tmp_path: Path, gzipped: bool, bom: bool
) -> None:
    body = (b"\xef\xbb\xbf" if bom else b"") + LINE * 2
    path = tmp_path / ("events.jsonl.gz" if gzipped else "events.jsonl")
    path.write_bytes(gzip.compress(body) if gzipped else body)
    with open_events(path) as stream:
        assert stream.read() == LINE * 2


def test_a_byte_order_mark_later_in_the_file_is_left_for_the_line_checks(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(LINE + b"\xef\xbb\xbf" + LINE)
    with open_events(path) as stream:
        assert stream.read() == LINE + b"\xef\xbb\xbf" + LINE


def test_a_file_shorter_than_a_byte_order_mark_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n")
    with open_events(path) as stream:
        assert stream.read() == b"\n"
