"""GroupCommit: OCPP messages arriving together share one record and one fsync on a writer
thread; a caller is answered only once its lines are on disk, and survives a SIGKILL so."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.group_commit import GroupCommit, GroupCommitClosedError
from ingest.spool import Spool, SpoolFullError
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


def test_a_fleet_shares_records_each_answered_once_its_lines_are_on_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    commit = GroupCommit(spool)

    async def station(number: int) -> None:
        for n in range(MESSAGES):
            await commit.append(message(number, n))
            # answered: the lines are in a record of the segment already
            stored = {line for record in records(tmp_path) for line in record.lines}
            assert set(message(number, n)) <= stored

    async def fleet() -> None:
        await asyncio.gather(*(station(number) for number in range(STATIONS)))

    asyncio.run(fleet())
    commit.close()
    # 40 stations each waiting for its answer: the writer stores groups, not messages
    assert len(records(tmp_path)) < STATIONS * MESSAGES / 4
    expected = sorted(
        line for s in range(STATIONS) for n in range(MESSAGES) for line in message(s, n)
    )
    assert sorted(drained(spool)) == expected
    spool.close()


def test_a_group_the_spool_cannot_take_is_refused_to_every_caller_and_none_stored(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=2000)
    # a long interval: the five callers below surely meet in one group
    commit = GroupCommit(spool, min_interval_s=0.5)

    async def together() -> tuple[list[BaseException | None], list[str]]:
        await commit.append(message(0, 0))  # alone: fits
        outcomes = await asyncio.gather(
            *(commit.append(message(s, 1) * 10) for s in range(1, 6)), return_exceptions=True
        )
        sent = drained(spool)  # room again: the next group is stored
        await commit.append(message(7, 2))
        return outcomes, sent

    outcomes, sent = asyncio.run(together())
    commit.close()
    assert all(isinstance(outcome, SpoolFullError) for outcome in outcomes)
    assert sent == message(0, 0)  # nothing of the refused group
    assert drained(spool) == message(7, 2)
    spool.close()


def test_a_cancelled_caller_leaves_the_others_answered_and_close_refuses_later_ones(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    commit = GroupCommit(spool, min_interval_s=0.2)

    async def scene() -> bool:
        await commit.append(message(0, 0))  # the next group now waits for the interval
        impatient = asyncio.ensure_future(commit.append(message(1, 1)))
        patient = asyncio.ensure_future(commit.append(message(2, 1)))
        await asyncio.sleep(0.01)
        impatient.cancel()
        await patient
        return impatient.cancelled()

    assert asyncio.run(scene())
    commit.close()
    with pytest.raises(GroupCommitClosedError):
        asyncio.run(commit.append(message(3, 2)))
    # the cancelled caller's lines went with its group: stored, never half of it
    assert sorted(drained(spool)) == sorted(message(0, 0) + message(1, 1) + message(2, 1))
    spool.close()


# The child: 30 coroutines append through one GroupCommit and print the id of each batch once
# its append has returned (acknowledged).
_CHILD = r"""
import asyncio, sys
from pathlib import Path
from ingest.group_commit import GroupCommit
from ingest.spool import Spool

commit = GroupCommit(Spool(Path(sys.argv[1])))

def lines(name):
    return [f"reading,station_id={name} power_w={i}.5 {i}" for i in range(20)]

async def station(s):
    for n in range(10**9):
        name = f"c{s}-{n}"
        await commit.append(lines(name))
        sys.stdout.write(name + "\n")
        sys.stdout.flush()

async def fleet():
    await asyncio.gather(*(station(s) for s in range(30)))

asyncio.run(fleet())
"""


@pytest.mark.parametrize("acknowledged_before_kill", [50, 400])
def test_every_acknowledged_message_survives_a_sigkill(
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
            child.send_signal(signal.SIGKILL)  # groups in flight, half written
            acknowledged += [line.strip() for line in child.stdout if line.strip()]
        finally:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
    assert child.returncode == -signal.SIGKILL
    reopened = Spool(tmp_path)  # cuts a torn tail: a group that was never acknowledged
    names = {line.split(" ", 1)[0].split("station_id=")[1] for line in drained(reopened)}
    reopened.close()
    assert set(acknowledged) <= names
