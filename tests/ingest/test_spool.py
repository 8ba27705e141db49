"""The durable spool: appended batches reach InfluxDB once, through outages and crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from chargewatch.errors import InfluxConnectionError, InUseError
from chargewatch.influx import InfluxClient, LocalInfluxd
from ingest.spool import Quarantine, Spool, SpoolDepth, SpoolDrainer, SpoolFullError

from ..conftest import free_port, unique_database

WINDOW = "time >= '1970-01-01T00:00:00Z' AND time <= '2100-01-01T00:00:00Z'"


def batch(start: int, count: int) -> list[str]:
    return [
        f"reading,connector_id=1,station_id=S power_w={i}.5 {i * 1_000_000_000}"
        for i in range(start, start + count)
    ]


def stored(client: InfluxClient) -> list[float]:
    series = client.query(f"SELECT power_w FROM reading WHERE {WINDOW}")
    return sorted(series[0].columns["power_w"].tolist()) if series else []


def drain_all(spool: Spool, client: InfluxClient) -> None:
    while spool.drain_once(client.write, max_lines=700):
        pass


def test_batches_drain_in_order_across_segments_and_segments_are_removed(
    tmp_path: Path, influx: InfluxClient
) -> None:
    spool = Spool(tmp_path, segment_bytes=4096)
    for start in range(0, 3000, 300):
        spool.append(batch(start, 300))
    assert spool.depth().lines == 3000
    assert len(list(tmp_path.glob("*.seg"))) > 5
    drain_all(spool, influx)
    assert stored(influx) == [i + 0.5 for i in range(3000)]
    assert spool.depth().lines == 0
    assert len(list(tmp_path.glob("*.seg"))) <= 2
    spool.close()


def test_a_reopened_spool_replays_only_what_was_not_sent(
    tmp_path: Path, influx: InfluxClient
) -> None:
    spool = Spool(tmp_path, segment_bytes=2048)
    spool.append(batch(0, 100))
    spool.drain_once(influx.write)
    spool.append(batch(100, 100))
    spool.append(batch(200, 100))
    spool.close()  # a restart: nothing of the object survives, only the files
    reopened = Spool(tmp_path, segment_bytes=2048)
    assert reopened.depth().lines == 200
    drain_all(reopened, influx)
    assert stored(influx) == [i + 0.5 for i in range(300)]
    reopened.close()


def test_a_record_torn_by_a_crash_is_cut_off_and_the_rest_kept(
    tmp_path: Path, influx: InfluxClient
) -> None:
    spool = Spool(tmp_path)
    spool.append(batch(0, 50))
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    with segment.open("ab") as handle:  # an append that died half-way: never acknowledged
        handle.write(b"B 5000 40 0badc0de\nreading,connector_id=1,station_id=S power_w=1")
    reopened = Spool(tmp_path)
    assert reopened.depth().lines == 50
    reopened.append(batch(50, 10))  # appends go on after the cut
    drain_all(reopened, influx)
    assert stored(influx) == [i + 0.5 for i in range(60)]
    reopened.close()


def test_a_full_spool_refuses_and_keeps_everything_it_accepted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=20_000)
    accepted = 0
    with pytest.raises(SpoolFullError, match="try again later"):
        while True:
            spool.append(batch(accepted, 50))
            accepted += 50
    assert accepted > 0
    assert spool.depth().lines == accepted
    spool.close()


def test_a_batch_influxdb_refuses_goes_aside_and_does_not_block(
    tmp_path: Path, influx: InfluxClient
) -> None:
    spool = Spool(tmp_path)
    spool.append(batch(0, 10))
    spool.append(['reading,connector_id=1,station_id=S power_w="text" 99000000000'])
    spool.append(batch(10, 10))
    drain_all(spool, influx)  # the first batch fixes power_w as a float; the string conflicts
    assert spool.rejected_lines > 0
    assert list((tmp_path / "rejected").iterdir())
    assert spool.depth().lines == 0
    spool.close()


def test_influxdb_down_then_back_every_accepted_line_arrives_once(tmp_path: Path) -> None:
    server = LocalInfluxd(data_dir=tmp_path / "influxd", port=free_port())
    server.start()
    client = InfluxClient(url=server.url, database=unique_database(), max_retries=0)
    client.create_database()
    spool = Spool(tmp_path / "spool")
    drainer = SpoolDrainer(
        spool, client.write, idle_wait_s=0.05, backoff_base_s=0.05, backoff_cap_s=0.2
    )
    drainer.start()
    try:
        spool.append(batch(0, 100))
        server.stop()
        for start in range(100, 1000, 100):  # accepted while InfluxDB is down
            spool.append(batch(start, 100))
        deadline = time.monotonic() + 10
        while drainer.errors == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert drainer.errors > 0
        assert isinstance(drainer.last_error, str)
        assert spool.depth().lines > 0
        server.start()
        deadline = time.monotonic() + 30
        while spool.depth().lines and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spool.depth().lines == 0
        assert stored(client) == [i + 0.5 for i in range(1000)]
    finally:
        drainer.stop()
        spool.close()
        client.close()
        server.stop()


def test_a_connection_error_leaves_the_cursor_where_it_was(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(batch(0, 10))

    def down(_lines: list[str]) -> None:
        raise InfluxConnectionError("cannot reach InfluxDB")

    with pytest.raises(InfluxConnectionError):
        spool.drain_once(down)
    assert spool.depth().lines == 10
    spool.close()


def test_concurrent_appenders_share_fsyncs_and_lose_nothing(
    tmp_path: Path, influx: InfluxClient
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    spool = Spool(tmp_path, segment_bytes=8192)  # small segments: rolls happen under load

    def append_many(worker: int) -> None:
        for k in range(50):
            spool.append(batch(worker * 1000 + k * 10, 10))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(append_many, range(8)))
    spool.close()
    reopened = Spool(tmp_path, segment_bytes=8192)  # everything acknowledged is on disk
    assert reopened.depth().lines == 8 * 50 * 10
    drain_all(reopened, influx)
    expected = sorted(
        w * 1000 + k * 10 + i + 0.5 for w in range(8) for k in range(50) for i in range(10)
    )
    assert stored(influx) == expected
    reopened.close()


# -- damage: one bad byte costs one record, never the rest ------------------------------------


class Collect:
    """``write`` for a drainer: keeps what it is sent, or fails like InfluxDB down."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.down = False

    def __call__(self, lines: list[str]) -> None:
        if self.down:
            raise InfluxConnectionError("cannot reach InfluxDB")
        self.lines += lines


def append_recording_spans(spool: Spool, directory: Path, batches: list[list[str]]) -> list[Span]:
    """Append each batch as one record and note where it lies (acknowledged = fsynced)."""
    spans = []
    for lines in batches:
        before = {p: p.stat().st_size for p in directory.glob("*.seg")}
        spool.append(lines)
        [(path, end)] = [
            (p, p.stat().st_size)
            for p in directory.glob("*.seg")
            if p.stat().st_size != before.get(p, 0)
        ]
        spans.append(Span(path, before.get(path, 0), end))
    return spans


class Span:
    def __init__(self, path: Path, start: int, end: int) -> None:
        self.path, self.start, self.end = path, start, end

    def flip(self, at: int) -> bytes:
        """Change one byte of the record (``at`` from its start; negative from its end);
        returns the record's bytes as they are now."""
        position = self.start + at if at >= 0 else self.end + at
        with self.path.open("r+b") as handle:
            handle.seek(position)
            byte = handle.read(1)
            handle.seek(position)
            handle.write(bytes([byte[0] ^ 0x5A]))
            handle.seek(self.start)
            return handle.read(self.end - self.start)


BATCHES = [batch(k * 40, 40) for k in range(5)]
WHERE = {"first byte": 0, "length field": 5, "middle": 600, "last byte": -1}


@pytest.mark.parametrize("at", WHERE.values(), ids=WHERE.keys())
@pytest.mark.parametrize("segment_bytes", [8 << 20, 1], ids=["one segment", "one per record"])
def test_a_changed_byte_on_disk_costs_exactly_that_record_on_restart(
    tmp_path: Path, at: int, segment_bytes: int
) -> None:
    spool = Spool(tmp_path, segment_bytes=segment_bytes)
    spans = append_recording_spans(spool, tmp_path, BATCHES)
    spool.close()
    damaged = spans[2].flip(at)
    reopened = Spool(tmp_path, segment_bytes=segment_bytes)
    assert reopened.depth().lines == 4 * 40
    sent = Collect()
    while reopened.drain_once(sent, max_lines=30):
        pass
    assert sent.lines == [line for k, lines in enumerate(BATCHES) if k != 2 for line in lines]
    assert reopened.quarantine() == Quarantine(records=1, bytes=len(damaged), files=1)
    [kept] = (tmp_path / "quarantine").iterdir()
    assert kept.read_bytes() == damaged
    assert reopened.depth() == SpoolDepth(0, 0)
    reopened.append(batch(1000, 5))  # and it goes on
    assert reopened.drain_once(sent) == 5
    reopened.close()


def test_a_changed_byte_while_the_drainer_runs_costs_that_record_and_it_keeps_going(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    sent = Collect()
    sent.down = True  # InfluxDB down: the backlog stays on disk
    drainer = SpoolDrainer(spool, sent, idle_wait_s=0.02, backoff_base_s=0.02, backoff_cap_s=0.05)
    drainer.start()
    try:
        spans = append_recording_spans(spool, tmp_path, BATCHES)
        damaged = spans[2].flip(len(BATCHES[2][0]) + 30)
        sent.down = False
        deadline = time.monotonic() + 10
        while spool.depth().lines and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sent.lines == [line for k, lines in enumerate(BATCHES) if k != 2 for line in lines]
        assert spool.depth() == SpoolDepth(0, 0)
        assert spool.quarantine().records == 1
        assert (tmp_path / "quarantine").is_dir()
        assert next((tmp_path / "quarantine").iterdir()).read_bytes() == damaged
        spool.append(batch(1000, 5))  # the drainer is still at work
        deadline = time.monotonic() + 10
        while len(sent.lines) < 4 * 40 + 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sent.lines[-5:] == batch(1000, 5)
    finally:
        drainer.stop()
        spool.close()


def test_a_damaged_last_record_is_kept_aside_not_cut_as_torn(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spans = append_recording_spans(spool, tmp_path, BATCHES[:3])
    spool.close()
    damaged = spans[-1].flip(-5)  # acknowledged, whole length, bad checksum: not a torn append
    reopened = Spool(tmp_path)
    assert reopened.quarantine().files == 1
    assert next((tmp_path / "quarantine").iterdir()).read_bytes() == damaged
    reopened.append(batch(500, 3))
    sent = Collect()
    while reopened.drain_once(sent):
        pass
    assert sent.lines == BATCHES[0] + BATCHES[1] + batch(500, 3)
    reopened.close()


@pytest.mark.parametrize("kept", [1, 5, 19, 20, 21, 300, -1])
def test_a_torn_append_is_cut_and_nothing_is_quarantined(tmp_path: Path, kept: int) -> None:
    spool = Spool(tmp_path)
    [span] = append_recording_spans(spool, tmp_path, BATCHES[:1])
    spool.close()
    whole = span.path.read_bytes()
    record = whole[span.start : span.end]
    with span.path.open("ab") as handle:  # the same append again, dead half-way
        handle.write(record[:kept])
    reopened = Spool(tmp_path)
    assert span.path.read_bytes() == whole
    assert reopened.depth().lines == 40
    assert reopened.quarantine() == Quarantine(0, 0, 0)
    reopened.close()


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "legacy"])
def test_a_huge_damaged_length_reads_no_more_than_the_segment(tmp_path: Path, legacy: bool) -> None:
    spool = Spool(tmp_path)
    spans = append_recording_spans(spool, tmp_path, BATCHES)
    spool.close()
    middle = spans[2]
    data = bytearray(middle.path.read_bytes())
    if legacy:  # a segment of the old text format whose length says 4 GB
        data[:] = b"".join(
            legacy_record(lines, size=4_000_000_000 if k == 2 else None)
            for k, lines in enumerate(BATCHES)
        )
    else:
        data[middle.start + 4 : middle.start + 8] = b"\xff\xff\xff\xf0"
    middle.path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        reopened = Spool(tmp_path)
        sent = Collect()
        while reopened.drain_once(sent):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    assert sent.lines == [line for k, lines in enumerate(BATCHES) if k != 2 for line in lines]
    assert reopened.quarantine().records == 1
    reopened.close()


def legacy_record(lines: list[str], *, size: int | None = None) -> bytes:
    payload = ("\n".join(lines) + "\n").encode()
    crc = zlib.crc32(payload)
    return f"B {size or len(payload)} {len(lines)} {crc:08x}\n".encode() + payload


def test_segments_of_the_old_format_are_still_read(tmp_path: Path) -> None:
    (tmp_path / "000000000001.seg").write_bytes(b"".join(legacy_record(b) for b in BATCHES[:2]))
    spool = Spool(tmp_path)
    assert spool.depth().lines == 80
    spool.append(BATCHES[2])  # new records go on in the same segment
    sent = Collect()
    while spool.drain_once(sent):
        pass
    assert sent.lines == BATCHES[0] + BATCHES[1] + BATCHES[2]
    spool.close()


def test_one_spool_directory_has_one_opener_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(InUseError, match=rf"the spool {tmp_path} is in use .*this process"):
        Spool(tmp_path)
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import ingest.spool, pathlib; ingest.spool.Spool(pathlib.Path({str(tmp_path)!r}))",
        ],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 1
    assert f"in use by another opener (pid {os.getpid()})" in other.stderr
    spool.append(batch(0, 5))
    spool.close()
    reopened = Spool(tmp_path)  # released on close
    assert reopened.depth().lines == 5
    reopened.close()


# -- the drainer: two writes in flight, the cursor in order ------------------------------------


class Held:
    """``write_body`` for a drainer: the first body waits until the second has been sent (two
    writes in flight) and the test lets it go; it fails once when ``fail_first`` (InfluxDB
    gone in the middle)."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.bodies: list[bytes] = []
        self.second_sent = threading.Event()
        self.release = threading.Event()
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self, body: bytes) -> None:
        first = body.startswith(batch(0, 1)[0].encode())
        if first and not self.second_sent.is_set():
            assert self.second_sent.wait(10), "the second batch was not sent meanwhile"
            assert self.release.wait(10)
            if self.fail_first:
                self.fail_first = False
                raise InfluxConnectionError("cannot reach InfluxDB")
        with self.lock:
            self.bodies.append(body)
        if not first:
            self.second_sent.set()


def wait_drained(spool: Spool) -> None:
    deadline = time.monotonic() + 10
    while spool.depth().lines and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("fail_first", [False, True])
def test_the_drainer_sends_two_batches_at_once_and_moves_the_cursor_in_order(
    tmp_path: Path, fail_first: bool
) -> None:
    spool = Spool(tmp_path)
    for start in range(0, 40, 10):
        spool.append(batch(start, 10))
    held = Held(fail_first=fail_first)

    def lines(_: list[str]) -> None:
        raise AssertionError("batches go as bodies")

    drainer = SpoolDrainer(
        spool, lines, write_body=held, batch_lines=10, idle_wait_s=0.02, backoff_base_s=0.02
    )
    drainer.start()
    try:
        assert held.second_sent.wait(10)
        time.sleep(0.05)
        # the second batch is in, the first not yet: the cursor stays before both
        assert spool.depth().lines == 40
        held.release.set()
        wait_drained(spool)
    finally:
        drainer.stop()
    assert spool.depth() == SpoolDepth(0, 0)
    sent = {line for body in held.bodies for line in body.decode().splitlines()}
    assert sent == set(batch(0, 40))  # each body is records' payloads as they were appended
    assert all(body.endswith(b"\n") for body in held.bodies)
    assert drainer.errors == (1 if fail_first else 0)
    spool.close()
    reopened = Spool(tmp_path)  # the cursor on disk is past everything sent
    assert reopened.depth() == SpoolDepth(0, 0)
    reopened.close()
