"""The durable spool: appended batches reach InfluxDB once, through outages and crashes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chargewatch.errors import InfluxConnectionError
from chargewatch.influx import InfluxClient, LocalInfluxd
from ingest.spool import Spool, SpoolDrainer, SpoolFullError

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
