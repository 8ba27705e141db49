"""Stamps written as RFC 3339 allows (section 5.6): a lower-case ``t`` and ``z`` name the same
instant as ``T`` and ``Z``, on the file path's columns as on its per-event path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analytics.pipeline import detect_stream
from chargewatch.events import EventDecoder
from chargewatch.flags import Flag
from ingest.pseudonym import Pseudonymizer
from tests.analytics.test_detect_end_to_end import chargewatch

STAMP = re.compile(rb'"ts":"(\d{4}-\d\d-\d\d)T([^"]*)Z"')


def flags_of(events: Path) -> tuple[list[Flag], int, int]:
    with events.open("rb") as stream:
        flags, report = detect_stream(stream, decoder=EventDecoder(Pseudonymizer(b"k" * 32)))
    return flags, report.rejected, report.sessions


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events = tmp_path_factory.mktemp("stamps") / "events.jsonl"
    done = chargewatch(
        "simulate",
        "--stations",
        "8",
        "--hours",
        "8",
        "--anomaly-rate",
        "0.5",
        "--seed",
        "17",
        "--out",
        str(events),
        "--labels",
        str(events.with_suffix(".labels")),
    )
    assert done.returncode == 0, done.stderr
    return events


def test_lower_case_t_and_z_give_the_same_flags(fleet: Path, tmp_path: Path) -> None:
    lower = tmp_path / "lower.jsonl"
    text = fleet.read_bytes()
    lower.write_bytes(STAMP.sub(rb'"ts":"\1t\2z"', text))
    assert lower.read_bytes().count(b'z"') >= text.count(b'Z"') > 100  # every stamp rewritten
    expected, rejected, sessions = flags_of(fleet)
    assert rejected == 0 and sessions > 0 and expected
    assert flags_of(lower) == (expected, 0, sessions)
