"""The spool under a fleet's traffic: the drainer batches a trickle of small records, and
appends from threads and from coroutines (through ``GroupCommit``) that were acknowledged all
survive the process being killed (SIGKILL) at any moment. ``GroupCommit`` itself:
``tests/ingest/test_group_commit.py``."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.spool import Spool, SpoolDrainer
from tests.ingest.test_group_commit import drained, message


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
# GroupCommit, and prints the id of each batch once its append has returned (acknowledged).
_CHILD = r"""
import asyncio, sys, threading
from pathlib import Path
from ingest.group_commit import GroupCommit
from ingest.spool import Spool

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
    appender = GroupCommit(spool)
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
