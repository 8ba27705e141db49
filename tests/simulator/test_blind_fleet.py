"""The blind fleet (bench/blind_fleet.py): deterministic for a seed, every line a valid event,
labels in CONTRACTS.md section 2's shape, naming sessions the events carry."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from chargewatch.events import EventDecoder, SessionStart, parse_ts
from chargewatch.kinds import AnomalyKind

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "blind_fleet.py"
EV_DATA = ROOT.parent / "shared" / "data" / "ev-curves" / "ev-data.json"  # ../shared, as in CI
KINDS = {str(kind) for kind in AnomalyKind}  # CONTRACTS section 3 (tests/alerts/test_taxonomy.py)

pytestmark = pytest.mark.skipif(not EV_DATA.exists(), reason="open-ev-data file not on this host")


def generate(folder: Path, seed: int) -> tuple[bytes, bytes]:
    folder.mkdir()
    events, labels = folder / "events.jsonl", folder / "labels.jsonl"
    args = ["--stations", "40", "--hours", "12", "--seed", str(seed), "--anomaly-rate", "0.4"]
    out = ["--out", str(events), "--labels", str(labels), "--ev-data", str(EV_DATA)]
    subprocess.run([sys.executable, str(SCRIPT), *args, *out], check=True, capture_output=True)
    return events.read_bytes(), labels.read_bytes()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    return generate(tmp_path_factory.mktemp("blind") / "a", seed=3)


def test_same_seed_same_bytes(fleet: tuple[bytes, bytes], tmp_path: Path) -> None:
    assert generate(tmp_path / "b", seed=3) == fleet
    assert generate(tmp_path / "c", seed=4)[0] != fleet[0]


def test_every_event_decodes(fleet: tuple[bytes, bytes]) -> None:
    decoder = EventDecoder(lambda tag: f"p-{tag}")
    events = [decoder.decode_line(line) for line in fleet[0].splitlines()]
    kinds = Counter(type(event).__name__ for event in events)
    assert {"Reading", "SessionStart", "SessionStop", "StatusChange", "Authorize"} <= set(kinds)
    raw = [orjson.loads(line) for line in fleet[0].splitlines()[:20_000]]
    # The stations' variety is there: numeric strings and numbers, several zone offsets.
    powers = {type(obj["power_w"]) for obj in raw if "power_w" in obj}
    assert powers == {str, float}
    assert len({obj["ts"][-6:] for obj in raw if not obj["ts"].endswith("Z")}) >= 2


def test_labels_have_the_contract_shape(fleet: tuple[bytes, bytes]) -> None:
    labels: list[dict[str, Any]] = [orjson.loads(line) for line in fleet[1].splitlines()]
    sessions = {
        event.session_id
        for event in map(EventDecoder(lambda tag: tag).decode_line, fleet[0].splitlines())
        if isinstance(event, SessionStart)
    }
    keys = {"session_id", "station_id", "connector_id", "kind", "start", "end"}
    for label in labels:
        assert set(label) == keys
        assert label["kind"] in KINDS
        assert label["session_id"] is None or label["session_id"] in sessions
        assert isinstance(label["connector_id"], int)
        assert parse_ts(label["start"], "start") <= parse_ts(label["end"], "end")
    assert len({label["kind"] for label in labels}) >= 9
    pairs = Counter(label["session_id"] for label in labels if label["kind"] == "concurrent_id_tag")
    assert pairs and all(count == 1 for count in pairs.values())
