"""Simulated events as an OCPP 2.0.1 charging station sends them.

A session is a transaction of TransactionEvents (Started, Updated, Ended) numbered by ``seqNo``;
inside it, readings and the charging states (Charging, SuspendedEV, SuspendedEVSE) are Updated
events, and the register goes with Started and Ended as Transaction.Begin and .End.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ocpp.v201 import ChargePoint, call

from chargewatch.events import EventType

from .replayer import SAMPLED, Event, Handler, Replayer

_CONNECTOR_STATUS = {
    "Available": "Available",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}
_CHARGING_STATES = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})
_STOP_REASON = {"HardReset": "ImmediateReset", "SoftReset": "Reboot", "UnlockCommand": "Remote"}


class Replayer201(Replayer):
    subprotocol = "ocpp2.0.1"
    charge_point = ChargePoint

    def __init__(self, cp: Any, errors: Counter[str], counts: Counter[str]) -> None:
        super().__init__(cp, errors, counts)
        self.seq_no = 0  # of the TransactionEvents sent, over all transactions

    def _handlers(self) -> Mapping[EventType, Handler]:
        return {
            EventType.AUTHORIZE: self._authorize,
            EventType.STATUS: self._status,
            EventType.SESSION_START: self._session_start,
            EventType.READING: self._reading,
            EventType.SESSION_STOP: self._session_stop,
        }

    def boot(self) -> Any:
        return call.BootNotification(
            charging_station={"model": "chargewatch-sim", "vendor_name": "chargewatch"},
            reason="PowerUp",
        )

    def _next_seq(self) -> int:
        self.seq_no += 1
        return self.seq_no

    async def _transaction_event(
        self, event_type: str, ts: str, tx: str, trigger: str, **fields: Any
    ) -> Any:
        return await self.call(
            call.TransactionEvent(
                event_type=event_type,
                timestamp=ts,
                trigger_reason=trigger,
                seq_no=self._next_seq(),
                transaction_info={"transaction_id": tx, **fields.pop("info", {})},
                **fields,
            )
        )

    async def _authorize(self, event: Event) -> None:
        await self.call(call.Authorize(id_token=_token(event["id_tag"])))

    async def _status(self, event: Event) -> None:
        status, connector = event["status"], event.get("connector_id", 0)
        session = self.open_on.get(connector)
        if status in _CHARGING_STATES and session in self.transactions:
            await self._transaction_event(
                "Updated",
                event["ts"],
                self.transactions[session],
                "ChargingStateChanged",
                info={"charging_state": status},
            )
            return
        await self.call(
            call.StatusNotification(
                timestamp=event["ts"],
                connector_status=_CONNECTOR_STATUS.get(status, "Occupied"),
                evse_id=connector,
                connector_id=1 if connector else 0,
            )
        )

    async def _session_start(self, event: Event) -> None:
        ts, connector = event["ts"], event.get("connector_id", 0)
        tx = uuid.uuid4().hex  # the station chooses transaction ids in 2.0.1
        meter = _sampled({"energy_wh": event.get("meter_start_wh")}, "Transaction.Begin")
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

    async def _reading(self, event: Event) -> None:
        ts = event["ts"]
        open_tx = self.transactions.get(event.get("session_id") or "")
        meter_value = [{"timestamp": ts, "sampled_value": _sampled(event)}]
        if open_tx is not None:
            await self._transaction_event(
                "Updated", ts, open_tx, "MeterValuePeriodic", meter_value=meter_value
            )
        else:
            evse_id = event.get("connector_id", 0)
            await self.call(call.MeterValues(evse_id=evse_id, meter_value=meter_value))

    async def _session_stop(self, event: Event) -> None:
        ts = event["ts"]
        tx = self.transactions.pop(event["session_id"], None)
        self.open_on.pop(event.get("connector_id", 0), None)
        if tx is None:
            return
        end = _sampled({"energy_wh": event.get("meter_stop_wh")}, "Transaction.End")
        reason = event.get("reason") or "Local"
        await self._transaction_event(
            "Ended",
            ts,
            tx,
            "StopAuthorized",
            info={"stopped_reason": _STOP_REASON.get(reason, reason)},
            meter_value=[{"timestamp": ts, "sampled_value": end}] if end else None,
        )


def _sampled(event: Event, context: str = "Sample.Periodic") -> list[dict[str, Any]]:
    return [
        {
            "value": float(event[key]),
            "measurand": measurand,
            "context": context,
            "unit_of_measure": {"unit": unit},
        }
        | ({"location": "EV"} if key in ("soc_pct", "temperature_c") else {})  # the car's
        for key, measurand, unit in SAMPLED
        if event.get(key) is not None
    ]


def _token(id_tag: str) -> dict[str, str]:
    return {"id_token": id_tag, "type": "ISO14443" if id_tag.isalnum() else "eMAID"}
