"""Replaying a simulated fleet to a running service over OCPP, in real or accelerated time.

``run_live(url, events_path, config=..., speed=60)`` opens one WebSocket per station to
``{url}/{station_id}`` (the ``websockets`` client with the ``ocpp`` library's ChargePoint) and
sends each simulated event as the message a real charger would send, at ``speed`` times real
time (60: one simulated minute per second):

- authorize: Authorize (both versions).
- session_start: 1.6 StartTransaction; 2.0.1 TransactionEvent Started (idToken, the register as
  Transaction.Begin).
- reading: 1.6 MeterValues (with the transactionId inside a session); 2.0.1 TransactionEvent
  Updated inside a session, MeterValues outside.
- status: StatusNotification; in 2.0.1, Charging, SuspendedEV and SuspendedEVSE during a
  transaction become a TransactionEvent Updated with that chargingState.
- session_stop: 1.6 StopTransaction; 2.0.1 TransactionEvent Ended (stoppedReason, the register
  as Transaction.End).

Each version is a table of handlers keyed by event type (``v16.py``, ``v201.py``).

The simulator writes an authorize event before each session start, so session_start sends no
Authorize of its own. The service decides authorizations with its own policy: in ``monitor``
mode every tag is Accepted whatever the simulated result was. Events are paced by the time they
were sent: a timestamp behind the previous event's (or more than six hours ahead of it: a
charger with a broken clock) is sent right after it, carrying its faulty timestamp.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException
from websockets.typing import Subprotocol

from chargewatch.errors import ChargewatchError
from chargewatch.events import parse_ts

from ..config import SimulationConfig
from ..output import plain_event
from ..run import simulate
from .replayer import Replayer
from .v16 import Replayer16
from .v201 import Replayer201

__all__ = ["LiveError", "LiveSummary", "VersionMix", "run_live"]

logger = logging.getLogger(__name__)
_CLIENT_LOGGER = logging.getLogger("simulator.live.client")  # the library logs frames
_CLIENT_LOGGER.setLevel(logging.WARNING)
_MAX_CLOCK_JUMP_NS = 6 * 3600 * 1_000_000_000
_NS = 1_000_000_000
_REPLAYERS: dict[str, type[Replayer]] = {cls.subprotocol: cls for cls in (Replayer16, Replayer201)}


class LiveError(ChargewatchError, ConnectionError):
    """The service could not be reached or refused every station (an ``OSError`` too)."""


class VersionMix(StrEnum):
    MIXED = "mixed"  # every third station speaks OCPP 2.0.1, the others 1.6
    V16 = "1.6"
    V201 = "2.0.1"

    def subprotocol(self, index: int) -> str:
        if self is VersionMix.V201 or (self is VersionMix.MIXED and index % 3 == 2):
            return "ocpp2.0.1"
        return "ocpp1.6"


@dataclass(frozen=True, slots=True)
class LiveSummary:
    stations: int
    stations_failed: int
    events: int  # events replayed
    messages: int  # OCPP Calls sent
    call_errors: dict[str, int]  # CallErrors received, by code
    wall_s: float


async def run_live(
    url: str,
    events_path: Path | None,
    *,
    config: SimulationConfig | None = None,
    speed: float = 60.0,
    versions: VersionMix = VersionMix.MIXED,
    response_timeout_s: float = 30.0,
) -> LiveSummary:
    """Replay ``events_path`` (or a fleet simulated from ``config``) to the endpoint ``url``."""
    if not speed > 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if events_path is None:
        if config is None:
            raise ValueError("give an events file or a simulation config")
        with tempfile.TemporaryDirectory(prefix="chargewatch-live-") as tmp:
            events_file = Path(tmp) / "events.jsonl"
            await asyncio.to_thread(simulate, config, events_file, Path(tmp) / "labels.jsonl")
            plan = await asyncio.to_thread(_plan, events_file)
    else:
        plan = await asyncio.to_thread(_plan, events_path)
    loop = asyncio.get_running_loop()
    began = loop.time()
    first_ns = min((events[0][0] for events in plan.values()), default=0)
    errors: Counter[str] = Counter()
    counts = Counter[str]()
    tasks = [
        _replay_station(
            url.rstrip("/"),
            station_id,
            versions.subprotocol(index),
            events,
            lambda send_ns: began + (send_ns - first_ns) / _NS / speed,
            response_timeout_s,
            errors,
            counts,
        )
        for index, (station_id, events) in enumerate(sorted(plan.items()))
    ]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    for failure in failed:
        if not isinstance(failure, Exception):
            raise failure  # cancelled, interrupted
        if not isinstance(failure, LiveError):  # LiveError was logged where it happened
            logger.error("a station's replay failed: %r", failure)
    if failed and len(failed) == len(tasks):
        raise LiveError(f"no station could replay to {url}: {failed[0]}")
    summary = LiveSummary(
        stations=len(tasks),
        stations_failed=len(failed),
        events=counts["events"],
        messages=counts["messages"],
        call_errors=dict(errors),
        wall_s=loop.time() - began,
    )
    logger.info(
        "replayed %d events from %d stations (%d failed) in %.1f s, %d CallErrors",
        summary.events,
        summary.stations,
        summary.stations_failed,
        summary.wall_s,
        sum(errors.values()),
    )
    return summary


def _plan(events_path: Path) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Each station's events with the time to send them, from the file's (sent-time) order."""
    by_station: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    previous: int | None = None
    with events_path.open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            event = plain_event(orjson.loads(line))  # numbers as numbers, whatever the style
            ts_ns = parse_ts(event["ts"])
            if previous is None or previous <= ts_ns <= previous + _MAX_CLOCK_JUMP_NS:
                previous = ts_ns
            by_station[event["station_id"]].append((previous, event))
    return dict(by_station)


async def _replay_station(
    url: str,
    station_id: str,
    subprotocol: str,
    events: list[tuple[int, dict[str, Any]]],
    due: Any,
    response_timeout_s: float,
    errors: Counter[str],
    counts: Counter[str],
) -> None:
    loop = asyncio.get_running_loop()
    replayer_class = _REPLAYERS[subprotocol]
    try:
        async with connect(f"{url}/{station_id}", subprotocols=[Subprotocol(subprotocol)]) as ws:
            cp = replayer_class.charge_point(
                station_id, ws, response_timeout=response_timeout_s, logger=_CLIENT_LOGGER
            )
            receiving = asyncio.create_task(cp.start())
            try:
                replayer = replayer_class(cp, errors, counts)
                await replayer.call(replayer.boot())
                for send_ns, event in events:
                    delay = due(send_ns) - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await replayer.send(event)
                    counts["events"] += 1
            finally:
                receiving.cancel()
                await asyncio.gather(receiving, return_exceptions=True)
    except (OSError, WebSocketException, TimeoutError) as exc:
        logger.warning("station %s: replay ended early: %s", station_id, type(exc).__name__)
        raise LiveError(f"station {station_id}: {exc}") from exc
