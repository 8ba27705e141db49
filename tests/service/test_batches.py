"""Event batches encoded in worker processes: the same result as in-process, errors that cross
the process boundary intact, and a worker's death costing one retry, not the service."""

from __future__ import annotations

import gzip
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from api.bodies import BodyError
from chargewatch.errors import BackpressureError
from ingest.pseudonym import Pseudonymizer
from service.batches import BatchEncoders

TS = "2026-11-24T08:15:30.250Z"
KEY = b"0123456789abcdef-test-key"


@pytest.fixture(scope="module")
def encoders() -> Iterator[BatchEncoders]:
    batches = BatchEncoders(Pseudonymizer(KEY), workers=1, max_body_bytes=1 << 20, max_events=100)
    try:
        yield batches
    finally:
        batches.close()


def test_a_batch_is_encoded_in_a_worker(encoders: BatchEncoders) -> None:
    events = [
        {"type": "reading", "ts": TS, "station_id": "S", "connector_id": 1, "power_w": 7},
        {
            "type": "authorize",
            "ts": TS,
            "station_id": "S",
            "id_tag": "04A1B2",
            "result": "Accepted",
        },
        {"type": "reading", "ts": TS, "station_id": "S", "connector_id": 2**64 - 1, "power_w": 7},
    ]
    body = gzip.compress(orjson.dumps(events))
    batch = encoders.encode([body[:10], body[10:]], gzipped=True, max_listed=10)
    assert batch.accepted_by_type == {"reading": 1, "authorize": 1}
    assert batch.rejected_by_field == {"connector_id": 1}
    assert [index for index, _field, _reason in batch.listed] == [2]
    lines = batch.lines.split("\n")
    assert len(lines) == 2 and Pseudonymizer(KEY)("04A1B2") in batch.lines
    assert "04A1B2" not in batch.lines.replace(Pseudonymizer(KEY)("04A1B2"), "")


@pytest.mark.parametrize(
    ("body", "gzipped", "status"),
    [(b"[" + b"0," * 100 + b"0]", False, 413), (b"not gzip", True, 400), (b"[1", False, 400)],
)
def test_refusals_keep_their_status_across_processes(
    encoders: BatchEncoders, body: bytes, gzipped: bool, status: int
) -> None:
    with pytest.raises(BodyError) as caught:
        encoders.encode([body], gzipped=gzipped, max_listed=10)
    assert caught.value.status == status and str(caught.value) == caught.value.detail


def children() -> list[int]:
    pid = os.getpid()
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_a_dead_worker_costs_that_batch_a_503_and_the_next_one_is_served() -> None:
    batches = BatchEncoders(Pseudonymizer(KEY), workers=1, max_body_bytes=1 << 20, max_events=10)
    body = orjson.dumps(
        [{"type": "reading", "ts": TS, "station_id": "S", "connector_id": 1, "power_w": 7}]
    )
    try:
        before = set(children())
        assert batches.encode([body], gzipped=False, max_listed=1).accepted_by_type
        for pid in set(children()) - before:  # the worker (and the pool's resource tracker)
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(BackpressureError):
            batches.encode([body], gzipped=False, max_listed=1)
        assert batches.encode([body], gzipped=False, max_listed=1).accepted_by_type
    finally:
        batches.close()


def test_bodies_of_senders_an_hour_apart_encoded_together_are_not_received_late() -> None:
    """Two back offices' bodies, one an hour behind the other, wait for the worker together and
    are encoded as one group: each body's receive times come from its own stamps, so none of
    their readings is indexed by receive time (``reading_rx``), and each gets its own counts."""
    from datetime import UTC, datetime, timedelta

    from chargewatch.schema import RX_MEASUREMENT

    def body(sender: str, lag: timedelta, readings: int) -> bytes:
        start = datetime(2026, 11, 24, 8, tzinfo=UTC) - lag
        return orjson.dumps(
            [
                {
                    "type": "reading",
                    "ts": (start + timedelta(seconds=6 * (i // 10))).isoformat(),
                    "station_id": f"{sender}-{i % 10}",
                    "connector_id": 1,
                    "energy_wh": float(i),
                }
                for i in range(readings)
            ]
            + [{"type": "status", "ts": start.isoformat(), "station_id": sender, "status": "?"}]
        )

    batches = BatchEncoders(Pseudonymizer(KEY), workers=1, max_body_bytes=1 << 20, max_events=500)
    try:
        lines, outcomes = batches.encode_group(
            [
                ([body("behind", timedelta(hours=1), 30)], False),  # fewer than half a window
                ([body("ahead", timedelta(0), 200)], False),
            ],
            max_listed=5,
        )
    finally:
        batches.close()
    assert [line for line in lines.split("\n") if line.startswith(RX_MEASUREMENT)] == []
    for outcome, readings in zip(outcomes, (30, 200), strict=True):
        assert not isinstance(outcome, BodyError)
        assert outcome.accepted_by_type == {"reading": readings}
        assert sum(outcome.rejected_by_field.values()) == 1  # the status without a connector
