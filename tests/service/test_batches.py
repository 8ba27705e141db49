"""Event batches encoded in worker processes: the same result as in-process, errors that cross
the process boundary intact, and a worker's death costing one retry, not the service."""

from __future__ import annotations

import gzip
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import orjson
import pytest

from api.bodies import BodyError
from chargewatch.errors import BackpressureError
from ingest.pseudonym import Pseudonymizer
from service.batches import LARGE_GROUP_BYTES, BatchEncoders, BatchGroups, EncodedBatch

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
        try:
            listed = (task / "children").read_text()
        except FileNotFoundError:  # a thread (not a worker) ended while we looked
            continue
        found += [int(c) for c in listed.split()]
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


class _HeldEncoders:
    """What ``BatchGroups`` asks of ``BatchEncoders``, each call held until let go: the bodies
    of each call in the order the calls came."""

    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []
        self._released = 0
        self._changed = threading.Condition()

    def encode(self, parts: list[bytes], *, gzipped: bool, max_listed: int) -> EncodedBatch:
        self._hold([b"".join(parts)])
        return EncodedBatch("line", {"reading": 1}, {}, [])

    def encode_group(
        self, bodies: Sequence[tuple[list[bytes], bool]], *, max_listed: int
    ) -> tuple[str, list[EncodedBatch | BodyError]]:
        self._hold([b"".join(parts) for parts, _gzipped in bodies])
        return "line", [EncodedBatch("", {"reading": 1}, {}, []) for _ in bodies]

    def _hold(self, bodies: list[bytes]) -> None:
        with self._changed:
            self.calls.append(bodies)
            call = len(self.calls)
            self._changed.notify_all()
            assert self._changed.wait_for(lambda: self._released >= call, timeout=30)

    def wait_calls(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.calls) >= count, timeout=30)

    def release(self) -> None:
        with self._changed:
            self._released += 1
            self._changed.notify_all()


def _waiting(groups: BatchGroups, count: int) -> None:
    """Until ``count`` bodies wait for a group (each has looked whether it may start one)."""
    for _ in range(3000):
        with groups._changed:
            if len(groups._queue.waiting) >= count:
                return
        threading.Event().wait(0.01)
    raise AssertionError(f"{count} bodies never waited")


def test_bodies_wait_for_a_small_group_and_go_together_beside_a_large_one() -> None:
    """With two workers, a body that comes while a small group is encoded waits for it and
    joins the next group (one fixed cost per call for both); beside a large group, which may
    hold a worker for seconds, a body starts at once."""
    held = _HeldEncoders()
    stored: list[EncodedBatch] = []
    groups = BatchGroups(
        cast(BatchEncoders, held), stored.append, workers=2, max_group_bytes=16 << 20
    )
    small = [b"[%d]" % i for i in range(3)]
    large = b"[" + b" " * LARGE_GROUP_BYTES + b"]"

    def accept(body: bytes) -> EncodedBatch:
        return groups.accept([body], gzipped=False, max_listed=1)

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(accept, small[0])
        held.wait_calls(1)
        behind = [pool.submit(accept, body) for body in small[1:]]
        _waiting(groups, 2)
        assert held.calls == [[small[0]]]  # not started beside the small group
        held.release()
        held.wait_calls(2)
        assert sorted(held.calls[1]) == small[1:]  # one call for both
        held.release()
        assert [f.result(30).accepted_by_type for f in (first, *behind)] == [{"reading": 1}] * 3

        big = pool.submit(accept, large)
        held.wait_calls(3)
        beside = pool.submit(accept, small[0])
        held.wait_calls(4)  # at once, beside the large group
        assert held.calls[3] == [small[0]]
        held.release()
        held.release()
        assert big.result(30).accepted_by_type == beside.result(30).accepted_by_type
    assert len(stored) == 4


def test_closing_ends_the_workers_and_a_refused_body_keeps_its_worker() -> None:
    batches = BatchEncoders(Pseudonymizer(KEY), workers=2, max_body_bytes=1 << 20, max_events=10)
    body = orjson.dumps(
        [{"type": "reading", "ts": TS, "station_id": "S", "connector_id": 1, "power_w": 7}]
    )
    before = set(children())
    try:
        assert batches.encode([body], gzipped=False, max_listed=1).accepted_by_type
        started = set(children()) - before  # the worker (and the resource tracker)
        workers = {pid for pid in started if b"resource_tracker" not in _cmdline(pid)}
        assert len(workers) == 1
        with pytest.raises(BodyError):
            batches.encode([b"[1"], gzipped=False, max_listed=1)
        assert batches.encode([body], gzipped=False, max_listed=1).accepted_by_type
        assert set(children()) - before == started  # the same worker served all three
    finally:
        batches.close()
    assert not workers & set(children())  # ended and reaped


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_the_next_group_is_encoded_while_the_last_one_is_stored() -> None:
    """A group leaves the worker once encoded: its store (an fsync) does not hold the next."""
    held = _HeldEncoders()
    storing = threading.Event()
    stored = threading.Event()

    def store(batch: EncodedBatch) -> None:
        if not storing.is_set():
            storing.set()
            assert stored.wait(30)

    groups = BatchGroups(cast(BatchEncoders, held), store, workers=1, max_group_bytes=1 << 20)

    def accept(body: bytes) -> EncodedBatch:
        return groups.accept([body], gzipped=False, max_listed=1)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(accept, b"[1]")
        held.wait_calls(1)
        held.release()
        assert storing.wait(30)  # the first group is being stored, and stays so
        second = pool.submit(accept, b"[2]")
        held.wait_calls(2)  # encoded meanwhile
        held.release()
        stored.set()
        assert first.result(30).accepted_by_type == second.result(30).accepted_by_type
