"""``chargewatch stations import``, ``users mark-fleet`` and ``detect --input --stations``: the
metadata reaches the state database and the detectors; ``detect --input`` writes nothing but its
output, even in a read-only folder."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from chargewatch.site_store import fleet_cards, load_metadata
from chargewatch.sites import StationInfo
from chargewatch.state import StateStore

PSEUDONYM = "0123456789abcdef0123456789abcdef"


def run(data_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "chargewatch", *args],
        env={**env, "CHARGEWATCH_DATA_DIR": str(data_dir)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def state_of(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "var"


def test_import_stores_good_rows_and_names_bad_ones(tmp_path: Path, state_of: Path) -> None:
    csv = tmp_path / "stations.csv"
    csv.write_text(
        "station_id,site_id,latitude,longitude,rated_power_w\n"
        "A1,depot,52.52,13.405,22000\n"
        "A2,depot,,,\n"
        "A3,depot,52.5,200,\n"
    )
    done = run(state_of, "stations", "import", str(csv))
    assert done.returncode == 1, done.stderr
    assert "refused stations.csv line 4: longitude: 200 is outside -180..180" in done.stdout
    assert "imported 2 stations at 1 sites, 1 rows refused" in done.stdout
    csv.write_text("station_id,site_id,rated_power_w\nA2,depot,11000\n")  # again: replaces
    assert run(state_of, "stations", "import", str(csv)).returncode == 0
    store = StateStore(f"sqlite:///{state_of / 'state.db'}")
    try:
        meta = load_metadata(store)
    finally:
        store.close()
    assert meta.stations["A1"] == StationInfo("A1", "depot", 52.52, 13.405, 22000.0)
    assert meta.stations["A2"] == StationInfo("A2", "depot", None, None, 11000.0)
    assert set(meta.stations) == {"A1", "A2"}


def test_a_bad_header_is_a_usage_error(tmp_path: Path, state_of: Path) -> None:
    csv = tmp_path / "stations.csv"
    csv.write_text("station_id,site\nA1,depot\n")
    done = run(state_of, "stations", "import", str(csv))
    assert done.returncode == 2
    assert "line 1: unknown column 'site'" in done.stderr


def test_fleet_cards_are_marked_listed_and_unmarked(state_of: Path) -> None:
    assert run(state_of, "users", "mark-fleet", PSEUDONYM).returncode == 0
    again = run(state_of, "users", "mark-fleet", PSEUDONYM)
    assert again.returncode == 0 and "already" in again.stdout
    assert run(state_of, "users", "fleet").stdout.split() == [PSEUDONYM]
    store = StateStore(f"sqlite:///{state_of / 'state.db'}")
    try:
        assert fleet_cards(store) == [PSEUDONYM]
        assert load_metadata(store).fleet_cards == frozenset({PSEUDONYM})
    finally:
        store.close()
    assert run(state_of, "users", "unmark-fleet", PSEUDONYM).returncode == 0
    assert run(state_of, "users", "unmark-fleet", PSEUDONYM).returncode == 2
    assert run(state_of, "users", "fleet").stdout.split() == []
    card = run(state_of, "users", "mark-fleet", "04A1B2C3D4E5F6")  # a card number, not a pseudonym
    assert card.returncode == 2 and "32 lower-case hex digits" in card.stderr


def _session(station: str, session: str, start_min: int, stop_min: int) -> list[bytes]:
    def ts(minute: int) -> str:
        return f"2026-11-24T{8 + minute // 60:02d}:{minute % 60:02d}:00Z"

    lines = [
        {
            "type": "session_start",
            "ts": ts(start_min),
            "station_id": station,
            "connector_id": 1,
            "session_id": session,
            "id_tag": "04A1B2C3D4",
        }
    ]
    for minute in range(start_min, stop_min):
        lines.append(
            {
                "type": "reading",
                "ts": ts(minute),
                "station_id": station,
                "connector_id": 1,
                "session_id": session,
                "power_w": 7400.0,
                "energy_wh": 1000.0 + 7400.0 * (minute - start_min) / 60.0,
            }
        )
    lines.append(
        {
            "type": "session_stop",
            "ts": ts(stop_min),
            "station_id": station,
            "connector_id": 1,
            "session_id": session,
        }
    )
    return [orjson.dumps(line) for line in lines]


def test_detect_input_reads_the_stations_file_and_writes_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    events = folder / "events.jsonl"
    lines = _session("ST1", "S1", 0, 60) + _session("ST2", "S2", 50, 110)
    lines.sort(key=lambda line: orjson.loads(line)["ts"])
    events.write_bytes(b"\n".join(lines) + b"\n")
    stations = folder / "stations.csv"
    stations.write_text("station_id,site_id,rated_power_w\nST1,depot,22000\nST2,depot,22000\n")
    out = tmp_path / "out"
    out.mkdir()
    before = sorted(p.name for p in folder.iterdir())
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)  # read-only: the data dir below cannot be made
    try:
        done = run(
            folder / "var",
            "detect",
            "--input",
            str(events),
            "--output",
            str(out / "flags.jsonl"),
            "--stations",
            str(stations),
            cwd=folder,
        )
        assert sorted(p.name for p in folder.iterdir()) == before
    finally:
        folder.chmod(stat.S_IRWXU)
    assert done.returncode == 0, done.stderr
    flags = [orjson.loads(line) for line in (out / "flags.jsonl").read_bytes().splitlines()]
    concurrent = [f for f in flags if f["kind"] == "concurrent_id_tag"]
    assert {f["session_id"] for f in concurrent} == {"S1", "S2"}
    assert all("same site depot" in f["reason"] for f in concurrent)
    assert all("moving to the next charger" in f["reason"] for f in concurrent)


def test_detect_stations_goes_with_input(tmp_path: Path) -> None:
    done = run(
        tmp_path / "var",
        "detect",
        "--since",
        "2026-11-24T00:00:00Z",
        "--until",
        "2026-11-25T00:00:00Z",
        "--stations",
        "x.csv",
    )
    assert done.returncode == 2 and "--stations go with --input" in done.stderr
