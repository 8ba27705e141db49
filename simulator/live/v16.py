"""Simulated events as an OCPP 1.6 charger sends them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ocpp.v16 import ChargePoint, call

from chargewatch.events import EventType

from .replayer import SAMPLED, Event, Handler, Replayer


class Replayer16(Replayer):
    subprotocol = "ocpp1.6"
    charge_point = ChargePoint

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
            charge_point_model="chargewatch-sim", charge_point_vendor="chargewatch"
        )

    async def _authorize(self, event: Event) -> None:
        await self.call(call.Authorize(id_tag=event["id_tag"]))

    async def _status(self, event: Event) -> None:
        await self.call(
            call.StatusNotification(
                connector_id=event.get("connector_id", 0),
                error_code=event.get("error_code") or "NoError",
                status=event["status"],
                timestamp=event["ts"],
                info=event.get("info"),
                vendor_error_code=event.get("vendor_error_code"),
            )
        )

    async def _session_start(self, event: Event) -> None:
        answer = await self.call(
            call.StartTransaction(
                connector_id=event.get("connector_id", 0),
                id_tag=event["id_tag"],
                meter_start=round(event.get("meter_start_wh") or 0),
                timestamp=event["ts"],
            )
        )
        if answer is not None:
            self.transactions[event["session_id"]] = answer.transaction_id

    async def _reading(self, event: Event) -> None:
        tx = self.transactions.get(event.get("session_id") or "")
        await self.call(
            call.MeterValues(
                connector_id=event.get("connector_id", 0),
                transaction_id=tx,
                meter_value=[{"timestamp": event["ts"], "sampled_value": _sampled(event)}],
            )
        )

    async def _session_stop(self, event: Event) -> None:
        tx = self.transactions.pop(event["session_id"], None)
        if tx is not None:
            await self.call(
                call.StopTransaction(
                    meter_stop=round(event.get("meter_stop_wh") or 0),
                    timestamp=event["ts"],
                    transaction_id=tx,
                    reason=event.get("reason"),
                )
            )


def _sampled(event: Event) -> list[dict[str, Any]]:
    # 1.6 sends values as strings
    return [
        {
            "value": f"{float(event[key]):.6g}" if key != "energy_wh" else str(event[key]),
            "measurand": measurand,
            "unit": unit,
            "context": "Sample.Periodic",
        }
        | ({"location": "EV"} if key in ("soc_pct", "temperature_c") else {})  # the car's
        for key, measurand, unit in SAMPLED
        if event.get(key) is not None
    ]
