"""Leases of the detection job's station partitions (``chargewatch.leases``), on SQLite and on the
PostgreSQL of this machine, on virtual time (``now`` passed in): expiry and takeover, the fair
share as instances come and go, never two holders of one partition under threads; then two
detection jobs sharing one fleet in a real InfluxDB, one of them dying half-way."""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from analytics.jobs import DetectionJob
from analytics.read.partition import partition_of, partition_stations
from chargewatch.events import EventDecoder
from chargewatch.flags import Flag, query_flags
from chargewatch.influx import BatchWriter, InfluxClient, quote_ident
from chargewatch.leases import LeaseBook, PartitionCountError, PartitionShare
from chargewatch.state import StateStore
from ingest.files import ingest_stream
from ingest.pseudonym import Pseudonymizer
from simulator import SimulationConfig, simulate
from tests.conftest import postgres_database

S = 1_000_000_000
INTERVAL = 30 * S  # the job's interval in serve (its default)
TTL = 2 * INTERVAL  # a lease lasts two intervals (analytics.jobs)
T0 = 1_795_000_000 * S

Stores = Callable[[], StateStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh state database: SQLite in ``tmp_path``, or a uniquely named PostgreSQL database,
    dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with postgres_database("cw_leases") as url:
        yield url


@pytest.fixture
def stores(state_url: str) -> Iterator[Stores]:
    """Opens a store of its own for each instance (as separate processes would); closes all."""
    opened: list[StateStore] = []

    def open_store() -> StateStore:
        opened.append(StateStore(state_url))
        return opened[-1]

    yield open_store
    for store in opened:
        store.close()


def share(stores: Stores, holder: str, count: int = 8) -> PartitionShare:
    return PartitionShare(LeaseBook(stores(), holder, ttl_ns=TTL), "detect", count)


def test_a_lease_is_held_until_it_expires_then_anyone_may_take_it(stores: Stores) -> None:
    a = LeaseBook(stores(), "a", ttl_ns=TTL)
    b = LeaseBook(stores(), "b", ttl_ns=TTL)
    name = ["detect:p00/4"]
    assert a.take(name, T0) == name
    assert b.take(name, T0 + TTL - 1) == []  # a's until T0 + TTL
    assert a.renew(name, T0 + TTL - 1) == name  # now until T0 + 2 TTL - 1
    assert b.take(name, T0 + 2 * TTL - 2) == []
    assert b.take(name, T0 + 2 * TTL - 1) == name  # expired: b takes it over
    assert a.renew(name, T0 + 2 * TTL) == []  # and a cannot renew it back
    assert a.take(name, T0 + 2 * TTL) == []
    live = a.live("detect:", T0 + 2 * TTL)
    assert [(v.name, v.holder) for v in live] == [("detect:p00/4", "b")]
    a.release(name)  # not a's: nothing happens
    assert a.live("detect:", T0 + 2 * TTL) == live
    b.release(name)  # given back: free at once
    assert a.take(name, T0 + 2 * TTL) == name


def test_instances_share_the_partitions_fairly_as_they_come_and_go(stores: Stores) -> None:
    a, b, c = share(stores, "a"), share(stores, "b"), share(stores, "c")
    t = T0
    assert a.balance(t) == tuple(range(8))  # alone: every partition
    assert b.balance(t) == ()  # all held, but b is known from now on
    assert a.balance(t + INTERVAL) == (0, 1, 2, 3)  # fair share ceil(8 / 2): gives back 4
    assert b.balance(t + INTERVAL) == (4, 5, 6, 7)
    t += 2 * INTERVAL
    assert c.balance(t) == ()  # a third instance: nothing free yet
    assert a.balance(t) == (0, 1, 2)  # ceil(8 / 3) = 3
    assert b.balance(t) == (4, 5, 6)
    assert sorted(c.balance(t)) == [3, 7]
    c.release()  # c stops cleanly: its partitions and its presence go back at once
    assert a.balance(t + INTERVAL) == (0, 1, 2, 3)
    assert sorted(a.balance(t + INTERVAL) + b.balance(t + INTERVAL)) == list(range(8))


def test_a_dead_instance_s_partitions_are_taken_two_intervals_after_its_last_renewal(
    stores: Stores,
) -> None:
    a, b = share(stores, "a"), share(stores, "b")
    a.balance(T0)
    b.balance(T0)
    a.balance(T0 + INTERVAL)  # a's last run: its leases last until T0 + 3 intervals
    assert b.balance(T0 + INTERVAL) == (4, 5, 6, 7)
    assert b.balance(T0 + 3 * INTERVAL - 1) == (4, 5, 6, 7)  # one missed renewal is no death
    assert b.balance(T0 + 3 * INTERVAL) == tuple(range(8))  # expired: b takes over
    assert {v.holder for v in b.book.live("detect:", T0 + 3 * INTERVAL)} == {"b"}


def test_an_instance_with_another_partition_count_refuses_to_judge(stores: Stores) -> None:
    share(stores, "a", count=8).balance(T0)
    other = share(stores, "b", count=16)
    with pytest.raises(PartitionCountError, match="CHARGEWATCH_DETECT_PARTITIONS"):
        other.balance(T0)


def test_one_taker_wins_each_lease_under_threads(stores: Stores) -> None:
    """Eight instances race for the same free (then expired) leases at the same moment."""
    books = [LeaseBook(stores(), f"i{k}", ttl_ns=TTL) for k in range(8)]
    names = [f"race:{n}" for n in range(12)]
    start = threading.Barrier(len(books))

    def race(book: LeaseBook, now_ns: int) -> list[str]:
        start.wait()
        return [name for name in names if book.take([name], now_ns)]

    for now in (T0, T0 + TTL, T0 + 2 * TTL):  # free, then expired twice
        with ThreadPoolExecutor(len(books)) as pool:
            won = list(pool.map(race, books, [now] * len(books)))
        assert Counter(name for names_won in won for name in names_won) == Counter(names)


def test_no_partition_is_held_twice_while_instances_balance_together_and_die(
    stores: Stores,
) -> None:
    """Six instances balance at once every interval; two die on the way. At every moment each
    partition has one holder at most, and once the dead ones' leases expired, the living
    hold them all."""
    shares = [share(stores, f"i{k}", count=16) for k in range(6)]
    dies_at = {1: 3, 4: 5}  # instance: the round it stops running in
    rounds = 10
    for r in range(rounds):
        now = T0 + r * INTERVAL
        alive = [s for k, s in enumerate(shares) if dies_at.get(k, rounds) > r]
        start = threading.Barrier(len(alive))

        def balance(
            part: PartitionShare, now_ns: int = now, gate: threading.Barrier = start
        ) -> tuple[int, ...]:
            gate.wait()
            return part.balance(now_ns)

        with ThreadPoolExecutor(len(alive)) as pool:
            held = list(pool.map(balance, alive))
        counts = Counter(p for h in held for p in h)
        assert all(n == 1 for n in counts.values()), f"round {r}: {held}"
        live = shares[0].book.live("detect:p", now)
        assert len({v.name for v in live}) == len(live)
    assert sorted(p for h in held for p in h) == list(range(16))  # the living hold all
    assert max(map(len, held)) - min(map(len, held)) <= 1  # 16 over 4: 4 each


def test_a_station_keeps_its_partition_as_stations_come_and_go() -> None:
    before = [f"CP-{i:04d}" for i in range(200)]
    after = [*before[50:], *(f"NEW-{i}" for i in range(80))]
    for count in (1, 7, 16):
        for p in range(count):
            mine_before, _ = partition_stations(before, [p], count)
            mine_after, _ = partition_stations(after, [p], count)
            assert set(mine_before) & set(after) <= set(mine_after)
    assert {partition_of(s, 16) for s in before} == set(range(16))  # 200 stations fill all 16


# -- two detection jobs on one fleet ------------------------------------------------------------

START = "2026-11-23T08:00:00+00:00"
HOURS = 5
JOB_INTERVAL = 20 * 60 * S  # virtual: fewer runs over the fleet's hours
# Of this fleet's stations, those of the two sessions of one id tag at once fall to different
# jobs (a keeps partitions 0-2, b takes 3-5), so the kind judged across partitions is too.
PARTS = 6


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("leases-fleet")
    config = SimulationConfig(
        stations=12, hours=HOURS, seed=5, start=datetime.fromisoformat(START), anomaly_rate=0.5
    )
    simulate(config, folder / "events.jsonl", folder / "labels.jsonl")
    return (folder / "events.jsonl").read_bytes().splitlines()


def load(client: InfluxClient, lines: list[bytes]) -> None:
    decoder = EventDecoder(Pseudonymizer(b"lease-test-key-0123456789"))
    with BatchWriter(client) as writer:
        ingest_stream(io.BytesIO(b"\n".join(lines)), decoder=decoder, sink=writer, on_reject=print)


def key(flag: Flag) -> tuple[object, ...]:
    if flag.session_id is not None:
        return (flag.session_id, flag.kind)
    return (None, flag.station_id, flag.connector_id, flag.kind, flag.start_ns)


def test_two_jobs_share_a_fleet_and_one_takes_over_when_the_other_dies(
    influx: InfluxClient, stores: Stores, fleet: list[bytes], tmp_path: Path
) -> None:
    """Jobs a and b on one state database judge a fleet interval by interval (virtual time); a
    dies half-way. Every partition is judged by one job at a time, b resumes a's partitions
    from their cursors within two intervals, and the flags stored are those of one job judging
    the same fleet on its own (in another InfluxDB database): each once."""
    load(influx, fleet)
    alone = InfluxClient(url=influx.url, database=f"{influx.database}_alone")
    alone.create_database()
    try:
        load(alone, fleet)
        expected = _judged_alone(alone, StateStore(f"sqlite:///{tmp_path / 'alone.db'}"))
    finally:
        alone.query(f"DROP DATABASE {quote_ident(alone.database)}")
        alone.close()

    jobs = {
        name: DetectionJob(
            influx,
            stores(),
            settle_s=0,
            partitions=PARTS,
            lease_s=2 * JOB_INTERVAL / S,
            instance_id=name,
            first_lookback_s=3600,
        )
        for name in ("a", "b")
    }
    begin = int(datetime.fromisoformat(START).timestamp()) * S
    runs = list(range(begin + JOB_INTERVAL, begin + (HOURS + 1) * 3600 * S, JOB_INTERVAL))
    death = runs[len(runs) // 2]
    took_over: int | None = None
    judged_before: dict[str, set[int]] = {"a": set(), "b": set()}  # until a died
    for now in runs:
        held: dict[str, set[int]] = {}
        for name, job in jobs.items():
            if name == "a" and now >= death:
                continue  # a died just before this run
            job.run(now)
            held[name] = set(job.status.partitions)
            if now < death:
                judged_before[name] |= held[name]
        assert not held.get("a", set()) & held["b"]
        if now >= death and took_over is None and held["b"] == set(range(PARTS)):
            took_over = now
    assert took_over is not None and took_over - death <= 2 * JOB_INTERVAL
    assert set(jobs["b"].cursors().values()) == {runs[-1]}  # every partition judged to the end

    flags = query_flags(influx, 0, runs[-1] + 24 * 3600 * S)
    counts = Counter(map(key, flags))
    assert all(n == 1 for n in counts.values())
    assert set(counts) == expected
    # each job flagged stations of its own, one of an id tag's two sessions at once each
    for name in ("a", "b"):
        kinds = {f.kind for f in flags if partition_of(f.station_id, PARTS) in judged_before[name]}
        assert "concurrent_id_tag" in kinds, name
    for job in jobs.values():
        job.state.close()


def _judged_alone(client: InfluxClient, state: StateStore) -> set[tuple[object, ...]]:
    job = DetectionJob(
        client,
        state,
        settle_s=0,
        partitions=PARTS,
        lease_s=2 * JOB_INTERVAL / S,
        instance_id="alone",
        first_lookback_s=3600,
    )
    begin = int(datetime.fromisoformat(START).timestamp()) * S
    for now in range(begin + JOB_INTERVAL, begin + (HOURS + 1) * 3600 * S, JOB_INTERVAL):
        job.run(now)
    state.close()
    return set(map(key, query_flags(client, 0, begin + (HOURS + 25) * 3600 * S)))
