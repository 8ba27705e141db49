"""Detection end to end on a small simulated fleet: the file path, the CLI, and InfluxDB."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from analytics.detectors import ConcurrentIdTag
from analytics.detectors.base import Detector
from analytics.pipeline import detect_stream
from analytics.window import detect_window
from chargewatch.events import EventDecoder, parse_ts
from chargewatch.flags import Flag, query_flags, read_flags, write_flags
from chargewatch.influx import BatchWriter, InfluxClient, LocalInfluxd
from ingest.files import ingest_stream
from ingest.pseudonym import Pseudonymizer
from models.evaluate import count_sessions, evaluate, read_labels

from ._support import CONTRACT_KEYS, OrphanEnergy, RegisterFalls

FLEET_START = "2026-11-23T00:00:00Z"
FLEET_END = "2026-11-23T13:00:00Z"


def chargewatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargewatch", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("fleet")
    events, labels = folder / "events.jsonl", folder / "labels.jsonl"
    done = chargewatch(
        "simulate",
        "--stations",
        "20",
        "--hours",
        "12",
        "--anomaly-rate",
        "0.2",
        "--seed",
        "7",
        "--start",
        FLEET_START,
        "--out",
        str(events),
        "--labels",
        str(labels),
    )
    assert done.returncode == 0, done.stderr
    return events, labels


def toy_flags(events: Path) -> list[Flag]:
    with events.open("rb") as stream:
        flags, report = detect_stream(
            stream,
            decoder=EventDecoder(Pseudonymizer(b"k" * 32)),
            detectors=[RegisterFalls(), OrphanEnergy()],
            max_sessions=20,  # several chunks: streaming must not lose or split sessions
        )
    assert report.rejected == 0
    assert report.sessions == count_sessions(events)
    return flags


def assert_contract(path: Path) -> None:
    for line in path.read_bytes().splitlines():
        obj = orjson.loads(line)
        assert list(obj) == CONTRACT_KEYS
        assert obj["session_id"] is None or isinstance(obj["session_id"], str)
        assert isinstance(obj["station_id"], str) and isinstance(obj["connector_id"], int)
        assert isinstance(obj["score"], float) and 0.0 <= obj["score"] <= 1.0
        assert parse_ts(obj["start"]) <= parse_ts(obj["end"])
        assert obj["start"].endswith("Z") and isinstance(obj["reason"], str) and obj["reason"]


def test_file_detection_finds_what_the_toy_detectors_should(
    fleet: tuple[Path, Path], tmp_path: Path
) -> None:
    events, labels = fleet
    flags = toy_flags(events)
    path = tmp_path / "flags.jsonl"
    write_flags(path, flags)
    assert_contract(path)
    result = evaluate(read_flags(path), read_labels(labels), sessions=count_sessions(events))
    by_kind = {k.kind: k for k in result.kinds}
    # every backwards register and the energy given to no one is caught
    assert by_kind["meter_backwards"].recall == 1.0
    assert by_kind["unauthorized_energy"].recall == 1.0
    assert result.normal_flagged_fraction is not None and result.normal_flagged_fraction <= 0.01


def test_evaluate_command_prints_the_table_and_json(
    fleet: tuple[Path, Path], tmp_path: Path
) -> None:
    events, labels = fleet
    flags = toy_flags(events)
    path = tmp_path / "flags.jsonl"
    write_flags(path, flags)
    done = chargewatch(
        "evaluate", "--flags", str(path), "--labels", str(labels), "--events", str(events), "--json"
    )
    assert done.returncode == 0, done.stderr
    numbers = orjson.loads(done.stdout)
    expected = evaluate(flags, read_labels(labels), sessions=count_sessions(events))
    assert numbers["overall"]["precision"] == pytest.approx(expected.overall.precision)
    assert numbers["overall"]["recall"] == pytest.approx(expected.overall.recall)
    assert numbers["normal_sessions"] == expected.normal_sessions
    table = chargewatch("evaluate", "--flags", str(path), "--labels", str(labels))
    assert table.returncode == 0, table.stderr
    assert "meter_backwards" in table.stdout and "overall" in table.stdout
    missing = chargewatch("evaluate", "--flags", str(tmp_path / "nope"), "--labels", str(labels))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_a_card_in_two_places_is_found_across_chunks(fleet: tuple[Path, Path]) -> None:
    """Chunks of 5 stopped sessions split the simulated pairs (one card at two stations at
    once) across chunks; they are judged over every session of the run all the same."""
    events, labels = fleet
    pairs = {(lab.session_id, lab.kind) for lab in read_labels(labels)}
    pairs = {p for p in pairs if p[1] == "concurrent_id_tag"}
    assert len(pairs) >= 2

    def concurrent(max_sessions: int) -> set[tuple[str | None, str]]:
        with events.open("rb") as stream:
            flags, _ = detect_stream(
                stream,
                decoder=EventDecoder(Pseudonymizer(b"k" * 32)),
                detectors=[ConcurrentIdTag()],
                max_sessions=max_sessions,
            )
        return {(f.session_id, f.kind) for f in flags}

    whole = concurrent(10_000)
    assert whole == pairs
    assert concurrent(5) == whole


def test_detect_command_writes_contract_flags(fleet: tuple[Path, Path], tmp_path: Path) -> None:
    events, _labels = fleet
    out = tmp_path / "flags.jsonl"
    env = {"CHARGEWATCH_DATA_DIR": str(tmp_path / "data")}
    done = chargewatch("detect", "--input", str(events), "--output", str(out), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{count_sessions(events)} sessions" in done.stdout
    assert_contract(out)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(events.read_bytes() + b"{not json\n")
    rejected = chargewatch("detect", "--input", str(bad), "--output", str(out), env=env)
    assert rejected.returncode == 1 and "rejected line" in rejected.stdout


def test_detect_command_refuses_mixed_or_missing_options(tmp_path: Path) -> None:
    for args in (
        ["detect"],
        ["detect", "--input", str(tmp_path / "x.jsonl")],
        ["detect", "--input", "x", "--output", "y", "--since", FLEET_START],
        ["detect", "--since", FLEET_END, "--until", FLEET_START],
    ):
        done = chargewatch(*args, env={"CHARGEWATCH_DATA_DIR": str(tmp_path)})
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ")


@pytest.fixture
def loaded(influx: InfluxClient, fleet: tuple[Path, Path]) -> Iterator[InfluxClient]:
    events, _ = fleet
    with events.open("rb") as stream, BatchWriter(influx) as writer:
        ingest_stream(
            stream,
            decoder=EventDecoder(Pseudonymizer(b"k" * 32)),
            sink=writer,
            on_reject=lambda rejection: pytest.fail(str(rejection)),
        )
    yield influx


def test_window_detection_stores_flags_and_profiles_idempotently(
    loaded: InfluxClient, influxd: LocalInfluxd, fleet: tuple[Path, Path]
) -> None:
    events, _ = fleet
    since, until = parse_ts(FLEET_START), parse_ts(FLEET_END)
    detectors: list[Detector] = [RegisterFalls(), OrphanEnergy()]
    flags, report = detect_window(loaded, since, until, detectors=detectors)
    assert report.sessions == count_sessions(events)
    file_flags = {(f.session_id, f.kind) for f in toy_flags(events) if f.kind == "meter_backwards"}
    window_flags = {(f.session_id, f.kind) for f in flags if f.kind == "meter_backwards"}
    # readings stamped by a wrong clock (1970, years ahead) lie outside any window
    assert window_flags <= file_flags and len(window_flags) >= len(file_flags) - 1
    assert query_flags(loaded, since, until) == flags

    detect_window(loaded, since, until, detectors=detectors)  # again: overwrites, no doubles
    assert query_flags(loaded, since, until) == flags
    bounds = f"time >= {since - 48 * 3600 * 10**9} AND time < {until}"
    (series,) = loaded.query(f"SELECT count(duration_s) FROM profile WHERE {bounds}")
    assert int(series.columns["count"][0]) == report.sessions + report.orphan_segments

    env = {"CHARGEWATCH_INFLUX_URL": influxd.url, "CHARGEWATCH_INFLUX_DATABASE": loaded.database}
    done = chargewatch("flags", "--since", FLEET_START, "--until", FLEET_END, env=env)
    assert done.returncode == 0, done.stderr
    printed = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert printed == [f.to_json() for f in flags]
    assert all(list(obj) == CONTRACT_KEYS for obj in printed)

    # the command, with the real detectors: same sessions, flags stored and printed back
    done = chargewatch("detect", "--since", FLEET_START, "--until", FLEET_END, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{report.sessions} sessions" in done.stdout
    done = chargewatch("flags", "--since", FLEET_START, "--until", FLEET_END, env=env)
    kinds = {orjson.loads(line)["kind"] for line in done.stdout.splitlines()}
    assert {"stall", "meter_backwards", "unauthorized_energy"} <= kinds


def test_consecutive_windows_judge_each_session_once(loaded: InfluxClient) -> None:
    since, until = parse_ts(FLEET_START), parse_ts(FLEET_END)
    middle = since + 6 * 3600 * 10**9
    detectors: list[Detector] = [RegisterFalls(), OrphanEnergy()]
    whole, whole_report = detect_window(loaded, since, until, detectors=detectors)
    first, first_report = detect_window(loaded, since, middle, detectors=detectors)
    second, second_report = detect_window(loaded, middle, until, detectors=detectors)
    # a session still open at the middle is judged (partly) by the first window, then again
    # when it stops, so only the sessions stopped before the middle are in the first alone
    assert first_report.sessions + second_report.sessions >= whole_report.sessions

    def sessions(flags: list[Flag]) -> set[tuple[str | None, str]]:
        return {(f.session_id, f.kind) for f in flags if f.session_id is not None}

    # every session is read from its start in the window that sees it stop: same verdicts
    assert sessions(whole) == sessions(first) | sessions(second)
    assert sessions(whole)


def test_an_empty_window_scores_nothing(influx: InfluxClient) -> None:
    flags, report = detect_window(influx, parse_ts(FLEET_START), parse_ts(FLEET_END))
    assert flags == [] and report.sessions == 0 and report.orphan_segments == 0
    assert query_flags(influx, parse_ts(FLEET_START), parse_ts(FLEET_END)) == []
