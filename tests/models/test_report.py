"""The evaluation report: its tables and pictures from a small simulated fleet, escaping of what
stations and labels say, the cap on pictures, ``evaluate --compare`` on the command line, and
the page as headless Chromium renders it (its tables there, every image loaded)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

import analytics.report
from analytics.judged import BUILTIN, Judged, judge, load_model
from analytics.report import ReportSummary, evaluate_judged, write_report
from analytics.training import history_from_file
from chargewatch.events import EventDecoder, format_ts
from ingest.pseudonym import Pseudonymizer
from models.evaluate import Label, read_labels
from simulator import SimulationConfig, simulate
from tests._chromium import dump_dom

START = datetime(2026, 11, 23, tzinfo=UTC)
HOSTILE = '<img src=x onerror="alert(1)">&'  # a session id as a label file may carry it


@dataclass(frozen=True, slots=True)
class Case:
    events: Path
    labels_path: Path
    judged: Judged
    labels: list[Label]  # the fleet's, one dropped (a false positive), two added (negatives)
    dropped: Label
    missed: Label  # a label on a normal session the detectors pass: a false negative


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Case]:
    folder = tmp_path_factory.mktemp("report")
    events, labels_path = folder / "events.jsonl", folder / "labels.jsonl"
    config = SimulationConfig(stations=8, hours=10, seed=31, start=START, anomaly_rate=0.3)
    simulate(config, events, labels_path)
    history = history_from_file(events, EventDecoder(Pseudonymizer(b"report-test-key" * 3)))
    judged = judge(history.batch, model=load_model(BUILTIN, None), now_ns=history.now_ns)
    truth = read_labels(labels_path)
    session_labels = [label for label in truth if label.session_id is not None]
    assert session_labels, "the fleet needs a labeled session"
    dropped = session_labels[0]
    flagged = {f.session_id for f in judged.flags}
    labelled = {label.session_id for label in truth}
    normal = next(
        i
        for i, sid in enumerate(judged.batch.session_id.tolist())
        if sid is not None and sid not in flagged and sid not in labelled
    )
    missed = Label(
        session_id=str(judged.batch.session_id[normal]),
        station_id=str(judged.batch.station_id[normal]),
        connector_id=int(judged.batch.connector_id[normal]),
        kind="stall",
        start_ns=int(judged.batch.start_ns[normal]),
        end_ns=int(judged.batch.start_ns[normal]) + 600 * 1_000_000_000,
    )
    hostile = dataclasses.replace(missed, session_id=HOSTILE)  # no such session: not drawn
    labels = [label for label in truth if label != dropped] + [missed, hostile]
    yield Case(events, labels_path, judged, labels, dropped, missed)


@pytest.fixture(scope="module")
def written(case: Case, tmp_path_factory: pytest.TempPathFactory) -> ReportSummary:
    """The report of the built-in detectors on the case (read only by the tests)."""
    folder = tmp_path_factory.mktemp("written")
    measured = evaluate_judged(case.judged, case.labels)
    return write_report(
        folder, [measured], case.labels, source="fleet <seed 31>", labels_source="labels.jsonl"
    )


def test_report_tables_pictures_and_escaping(case: Case, written: ReportSummary) -> None:
    summary = written
    tmp_path = summary.index.parent
    page = summary.index.read_text(encoding="utf-8")
    assert '<table id="metrics">' in page and '<table id="confusion-1"' in page
    # one false positive (the dropped label's flag) and two false negatives, one drawn
    assert "False positives (builtin): 1 flags no label matches" in page
    assert "False negatives (builtin): 2 labels no flag found" in page
    assert f"session {case.missed.session_id}" in page
    assert summary.images == 2 + 2  # histograms, threshold curves; one picture of each list
    assert summary.pictures_left_out == 0
    images = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(images) == sorted(p.name for p in tmp_path.glob("*.png"))
    for name in images:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # what labels and callers say is text, never markup
    assert HOSTILE not in page and "fleet <seed 31>" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    assert "fleet &lt;seed 31&gt;" in page
    assert "no readings of it in the data to draw" in page
    # the confusion table has the missed label as a "stall" row that nothing flagged
    confusion = page.split('id="confusion-1"')[1].split("</table>")[0]
    stall_row = re.search(r"<tr><th>stall</th>(.*?)</tr>", confusion)
    assert stall_row is not None and '<td class="off">1</td>' in stall_row.group(1)


def test_pictures_are_capped_and_the_rest_counted(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(analytics.report, "MAX_PICTURES", 1)
    measured = evaluate_judged(case.judged, case.labels)
    summary = write_report(tmp_path, [measured], case.labels, source="s", labels_source="l")
    page = summary.index.read_text(encoding="utf-8")
    assert "1 more not drawn (at most 1 shown)." in page
    assert summary.pictures_left_out == 1


def test_evaluate_compare_and_report_on_the_command_line(case: Case, tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(
        b"".join(
            orjson.dumps(
                {
                    "session_id": label.session_id,
                    "station_id": label.station_id,
                    "connector_id": label.connector_id,
                    "kind": label.kind,
                    "start": format_ts(label.start_ns),
                    "end": format_ts(label.end_ns),
                }
            )
            + b"\n"
            for label in case.labels
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEWATCH_")}
    env["CHARGEWATCH_DATA_DIR"] = str(tmp_path / "var")
    command = [sys.executable, "-m", "chargewatch", "evaluate", "--labels", str(labels)]
    data = ["--events", str(case.events)]
    done = subprocess.run(
        [*command, *data, "--compare", "builtin", "built-in", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert result["models"] == ["builtin", "built-in"]
    first, second = (result["evaluations"][m] for m in result["models"])
    assert first == second
    assert first["overall"]["labels"] == len(case.labels)
    # the same data and detectors: every difference is nil
    difference = result["difference"]
    assert [k["kind"] for k in difference["kinds"]] == [k["kind"] for k in first["kinds"]]
    assert all(k["f1_change"] in (0.0, None) for k in difference["kinds"])
    refused = subprocess.run(
        [*command, "--model", "builtin"],  # no data to judge
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2
    assert "give --events FILE, or --since and --until" in refused.stderr


# Counts, once the page has loaded, its images that the browser decoded (complete, with a
# width): a copy of the page carries it, the report itself has no script.
_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.images = images.length;
  document.body.dataset.loaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.tables = document.querySelectorAll("table").length;
});
</script>
"""


def test_the_report_renders_in_headless_chromium(written: ReportSummary, tmp_path: Path) -> None:
    summary = written
    probe = summary.index.parent / f"probe-{tmp_path.name}.html"  # beside its images
    page = summary.index.read_text(encoding="utf-8")
    probe.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = dump_dom(probe)
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[:500]
    attributes = dict(re.findall(r'data-(\w+)="(\d+)"', body.group(1)))
    assert attributes, f"the probe did not run: {body.group(0)}"
    assert int(attributes["images"]) == summary.images == 4
    assert attributes["loaded"] == attributes["images"]
    assert attributes["tables"] == "2"  # metrics and confusion
    assert 'id="metrics"' in dom and "<th>kind</th>" in dom
