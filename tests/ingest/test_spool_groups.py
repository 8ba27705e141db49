"""Group commit: appends that arrive together share one record and one fsync, and whatever was
acknowledged survives the process being killed (SIGKILL) at any moment."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.spool import AsyncAppender, Spool, SpoolDrainer, SpoolFullError
from ingest.spool_records import Record, scan

STATIONS = 40
MESSAGES = 5


def message(station: int, n: int) -> list[str]:
    """A station's message: two lines, as a MeterValues with its heartbeat becomes."""
    return [
        f"reading,connector_id=1,station_id=S{station} power_w={n}.5 {n}",
        f'station,station_id=S{station} event="heartbeat" {n}',
    ]


def records(directory: Path) -> list[Record]:
    found: list[Record] = []
    for path in sorted(directory.glob("*.seg")):
        data = path.read_bytes()
        found += [item for item in scan(data, 0, len(data)) if isinstance(item, Record)]
    return found


def drained(spool: Spool) -> list[str]:
    sent: list[str] = []
    while spool.drain_once(sent.extend):
        pass
    return sent


def test_messages_arriving_together_share_records_and_all_are_stored(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    appender = AsyncAppender(spool)

    async def station(number: int) -> None:
        for n in range(MESSAGES):
            await appender.append(message(number, n))

    async def fleet() -> None:
        await asyncio.gather(*(station(number) for number in range(STATIONS)))

    asyncio.run(fleet())
    stored = records(tmp_path)
    # 40 stations each waiting for its answer: at most one group stores while the next gathers
    assert len(stored) < STATIONS * MESSAGES / 4
    expected = sorted(
        line for s in range(STATIONS) for n in range(MESSAGES) for line in message(s, n)
    )
    assert sorted(drained(spool)) == expected
    spool.close()


def test_a_group_the_spool_cannot_take_is_refused_to_every_caller_and_none_stored(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=2000)
    appender = AsyncAppender(spool)

    async def together() -> tuple[list[BaseException | None], list[str]]:
        await appender.append(message(0, 0))  # alone: fits
        # five messages arriving together: one group, too large for the room left
        outcomes = await asyncio.gather(
            *(appender.append(message(s, 1) * 10) for s in range(1, 6)), return_exceptions=True
        )
        sent = drained(spool)  # room again: the next group is stored
        await appender.append(message(7, 2))
        return outcomes, sent

    outcomes, sent = asyncio.run(together())
    assert all(isinstance(outcome, SpoolFullError) for outcome in outcomes)
    assert sent == message(0, 0)  # nothing of the refused group
    assert drained(spool) == message(7, 2)
    spool.close()


def test_the_drainer_sends_a_trickle_in_a_few_batches(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    writes: list[int] = []
    sent: list[str] = []

    def write(lines: list[str]) -> None:
        writes.append(len(lines))
        sent.extend(lines)

    drainer = SpoolDrainer(spool, write, idle_wait_s=0.05, linger_s=0.5)
    drainer.start()
    try:
        for n in range(100):  # a hundred small records in a row, as a fleet's messages come
            spool.append(message(n, n))
        deadline = time.monotonic() + 60
        while len(sent) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        drainer.stop()
    assert sorted(sent) == sorted(line for n in range(100) for line in message(n, n))
    assert len(writes) < 10  # not one InfluxDB request per record
    spool.close()


# The child: appends from 4 threads (one record each) and from 20 coroutines through one
# AsyncAppender, and prints the id of each batch once its append has returned (acknowledged).
_CHILD = r"""
import asyncio, sys, threading
from pathlib import Path
from ingest.spool import AsyncAppender, Spool

spool = Spool(Path(sys.argv[1]))
lock = threading.Lock()

def acknowledge(name):
    with lock:
        sys.stdout.write(name + "\n")
        sys.stdout.flush()

def lines(name):
    return [f"reading,station_id={name} power_w={i}.5 {i}" for i in range(20)]

def thread(t):
    for n in range(10**9):
        name = f"t{t}-{n}"
        spool.append(lines(name))
        acknowledge(name)

async def station(appender, s):
    for n in range(10**9):
        name = f"c{s}-{n}"
        await appender.append(lines(name))
        acknowledge(name)

async def fleet():
    appender = AsyncAppender(spool)
    await asyncio.gather(*(station(appender, s) for s in range(20)))

for t in range(4):
    threading.Thread(target=thread, args=(t,), daemon=True).start()
asyncio.run(fleet())
"""


@pytest.mark.parametrize("acknowledged_before_kill", [50, 400])
def test_every_acknowledged_batch_survives_a_sigkill(
    tmp_path: Path, acknowledged_before_kill: int
) -> None:
    acknowledged: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            while len(acknowledged) < acknowledged_before_kill:
                line = child.stdout.readline()
                assert line, "the child stopped before it was killed"
                acknowledged.append(line.strip())
            child.send_signal(signal.SIGKILL)  # appends in flight, groups half written
            acknowledged += [line.strip() for line in child.stdout if line.strip()]
        finally:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
    assert child.returncode == -signal.SIGKILL
    reopened = Spool(tmp_path)  # cuts a torn tail: an append that was never acknowledged
    names = {line.split(" ", 1)[0].split("station_id=")[1] for line in drained(reopened)}
    reopened.close()
    assert set(acknowledged) <= names
