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
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from ocpp.exceptions import OCPPError
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException
from websockets.typing import Subprotocol

from chargewatch.errors import ChargewatchError
from chargewatch.events import parse_ts

from .config import SimulationConfig
from .run import simulate

__all__ = ["LiveError", "LiveSummary", "VersionMix", "run_live"]

logger = logging.getLogger(__name__)
_CLIENT_LOGGER = logging.getLogger("simulator.live.client")  # the library logs frames
_CLIENT_LOGGER.setLevel(logging.WARNING)
_MAX_CLOCK_JUMP_NS = 6 * 3600 * 1_000_000_000
_NS = 1_000_000_000


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
            event = orjson.loads(line)
            ts_ns = parse_ts(event["ts"])
            if previous is None or previous <= ts_ns <= previous + _MAX_CLOCK_JUMP_NS:
                previous = ts_ns
            by_station[event["station_id"]].append((previous, event))
    return dict(by_station)


class _Replayer:
    """One station's conversation; the version subclasses turn events into Calls."""

    def __init__(self, cp: Any, errors: Counter[str], counts: Counter[str]) -> None:
        self.cp = cp
        self.errors = errors
        self.counts = counts
        self.transactions: dict[str, Any] = {}  # simulated session id -> OCPP transaction id
        self.open_on: dict[int, str] = {}  # connector -> simulated session id

    async def call(self, payload: Any) -> Any:
        self.counts["messages"] += 1
        try:
            return await self.cp.call(payload, suppress=False)
        except OCPPError as exc:
            self.errors[exc.code] += 1
            return None

    async def send(self, event: dict[str, Any]) -> None:
        raise NotImplementedError


class _Replayer16(_Replayer):
    async def send(self, event: dict[str, Any]) -> None:
        kind, ts, connector = event["type"], event["ts"], event.get("connector_id", 0)
        if kind == "authorize":
            await self.call(call16.Authorize(id_tag=event["id_tag"]))
        elif kind == "status":
            await self.call(
                call16.StatusNotification(
                    connector_id=connector,
                    error_code=event.get("error_code") or "NoError",
                    status=event["status"],
                    timestamp=ts,
                    info=event.get("info"),
                    vendor_error_code=event.get("vendor_error_code"),
                )
            )
        elif kind == "session_start":
            answer = await self.call(
                call16.StartTransaction(
                    connector_id=connector,
                    id_tag=event["id_tag"],
                    meter_start=round(event.get("meter_start_wh") or 0),
                    timestamp=ts,
                )
            )
            if answer is not None:
                self.transactions[event["session_id"]] = answer.transaction_id
        elif kind == "reading":
            tx = self.transactions.get(event.get("session_id") or "")
            await self.call(
                call16.MeterValues(
                    connector_id=connector,
                    transaction_id=tx,
                    meter_value=[{"timestamp": ts, "sampled_value": _sampled_16(event)}],
                )
            )
        elif kind == "session_stop":
            tx = self.transactions.pop(event["session_id"], None)
            if tx is not None:
                await self.call(
                    call16.StopTransaction(
                        meter_stop=round(event.get("meter_stop_wh") or 0),
                        timestamp=ts,
                        transaction_id=tx,
                        reason=event.get("reason"),
                    )
                )


_SAMPLED = (  # event field, measurand, 1.6 unit, 2.0.1 unit
    ("energy_wh", "Energy.Active.Import.Register", "Wh"),
    ("power_w", "Power.Active.Import", "W"),
    ("power_offered_w", "Power.Offered", "W"),
    ("current_a", "Current.Import", "A"),
    ("voltage_v", "Voltage", "V"),
    ("soc_pct", "SoC", "Percent"),
    ("temperature_c", "Temperature", "Celsius"),
)


def _sampled_16(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "value": f"{float(event[key]):.6g}" if key != "energy_wh" else str(event[key]),
            "measurand": measurand,
            "unit": unit,
            "context": "Sample.Periodic",
        }
        | ({"location": "EV"} if key == "soc_pct" else {})
        for key, measurand, unit in _SAMPLED
        if event.get(key) is not None
    ]


def _sampled_201(event: dict[str, Any], context: str = "Sample.Periodic") -> list[dict[str, Any]]:
    return [
        {
            "value": float(event[key]),
            "measurand": measurand,
            "context": context,
            "unit_of_measure": {"unit": unit},
        }
        for key, measurand, unit in _SAMPLED
        if event.get(key) is not None
    ]


_CONNECTOR_STATUS_201 = {
    "Available": "Available",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}
_CHARGING_STATES = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})
_STOP_REASON_201 = {"HardReset": "ImmediateReset", "SoftReset": "Reboot", "UnlockCommand": "Remote"}


class _Replayer201(_Replayer):
    def __init__(self, cp: Any, errors: Counter[str], counts: Counter[str]) -> None:
        super().__init__(cp, errors, counts)
        self.seq_no = 0

    def _next_seq(self) -> int:
        self.seq_no += 1
        return self.seq_no

    async def _transaction_event(
        self, event_type: str, ts: str, tx: str, trigger: str, **fields: Any
    ) -> Any:
        return await self.call(
            call201.TransactionEvent(
                event_type=event_type,
                timestamp=ts,
                trigger_reason=trigger,
                seq_no=self._next_seq(),
                transaction_info={"transaction_id": tx, **fields.pop("info", {})},
                **fields,
            )
        )

    async def send(self, event: dict[str, Any]) -> None:
        kind, ts, connector = event["type"], event["ts"], event.get("connector_id", 0)
        if kind == "authorize":
            await self.call(call201.Authorize(id_token=_token(event["id_tag"])))
        elif kind == "status":
            status = event["status"]
            session = self.open_on.get(connector)
            if status in _CHARGING_STATES and session in self.transactions:
                await self._transaction_event(
                    "Updated",
                    ts,
                    self.transactions[session],
                    "ChargingStateChanged",
                    info={"charging_state": status},
                )
                return
            await self.call(
                call201.StatusNotification(
                    timestamp=ts,
                    connector_status=_CONNECTOR_STATUS_201.get(status, "Occupied"),
                    evse_id=connector,
                    connector_id=1 if connector else 0,
                )
            )
        elif kind == "session_start":
            tx = uuid.uuid4().hex  # the station chooses transaction ids in 2.0.1
            begin = {"energy_wh": event.get("meter_start_wh")}
            meter = _sampled_201(begin, "Transaction.Begin")
            await self._transaction_event(
                "Started",
                ts,
                tx,
                "Authorized",
                evse={"id": connector, "connector_id": 1},
                id_token=_token(event["id_tag"]),
                meter_value=[{"timestamp": ts, "sampled_value": meter}] if meter else None,
            )
            self.transactions[event["session_id"]] = tx
            self.open_on[connector] = event["session_id"]
        elif kind == "reading":
            open_tx = self.transactions.get(event.get("session_id") or "")
            meter_value = [{"timestamp": ts, "sampled_value": _sampled_201(event)}]
            if open_tx is not None:
                await self._transaction_event(
                    "Updated", ts, open_tx, "MeterValuePeriodic", meter_value=meter_value
                )
            else:
                await self.call(call201.MeterValues(evse_id=connector, meter_value=meter_value))
        elif kind == "session_stop":
            tx = self.transactions.pop(event["session_id"], None)
            self.open_on.pop(connector, None)
            if tx is not None:
                end = _sampled_201({"energy_wh": event.get("meter_stop_wh")}, "Transaction.End")
                reason = event.get("reason") or "Local"
                await self._transaction_event(
                    "Ended",
                    ts,
                    tx,
                    "StopAuthorized",
                    info={"stopped_reason": _STOP_REASON_201.get(reason, reason)},
                    meter_value=[{"timestamp": ts, "sampled_value": end}] if end else None,
                )


def _token(id_tag: str) -> dict[str, str]:
    return {"id_token": id_tag, "type": "ISO14443" if id_tag.isalnum() else "eMAID"}


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
    v16 = subprotocol == "ocpp1.6"
    try:
        async with connect(f"{url}/{station_id}", subprotocols=[Subprotocol(subprotocol)]) as ws:
            cls = ChargePoint16 if v16 else ChargePoint201
            cp = cls(station_id, ws, response_timeout=response_timeout_s, logger=_CLIENT_LOGGER)
            receiving = asyncio.create_task(cp.start())
            try:
                replayer = (_Replayer16 if v16 else _Replayer201)(cp, errors, counts)
                if v16:
                    boot = call16.BootNotification(
                        charge_point_model="chargewatch-sim", charge_point_vendor="chargewatch"
                    )
                else:
                    boot = call201.BootNotification(
                        charging_station={"model": "chargewatch-sim", "vendor_name": "chargewatch"},
                        reason="PowerUp",
                    )
                await replayer.call(boot)
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
