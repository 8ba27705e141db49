"""OCPP 1.6 (JSON): the central system's side of a charge point's messages.

Transaction ids are handed out by ``TransactionIds``; a session is ``f"{station_id}-{id}"``.
StopTransaction carries no connector, so the connector comes from the transaction book (filled
by StartTransaction, and by MeterValues naming a transaction it never saw begin, on a connector
with none open); 0 when unknown. MeterValues of connector 0, the main meter, are no session's.
A StartTransaction re-sent after its answer was lost (same connector, idTag, timestamp and
meterStart while the first is open) gets the first one's id again (``book.StartKey``); a
StopTransaction re-sent so finds its connector among the transactions closed lately.
BootNotification is recorded as a ``boot`` station event (``liveness``).
"""

from __future__ import annotations

import logging
from typing import Any

from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, DataTransferStatus, RegistrationStatus
from ocpp.v16.enums import AuthorizationStatus as AuthorizationStatus16

from chargewatch.events import (
    Authorize,
    ChargePointErrorCode,
    ChargePointStatus,
    Event,
    SessionStart,
    SessionStop,
    StationEventKind,
    StatusChange,
    check_connector_id,
)

from .book import OpenTransaction, StartKey
from .meter import ValueRejectedError
from .rpc import Version
from .station import StationBase, clean_text, handles

__all__ = ["Station16"]

logger = logging.getLogger(__name__)
# The largest meterStart a StartTransaction may carry: the book keys a start by it, as a 64-bit
# integer in the state database. No register comes near it: 9.2e18 Wh is some 300 times the
# electricity the whole world generates in a year (~3e16 Wh). Beyond it the value is refused as
# impossible (PropertyConstraintViolation), not failed in the database as an internal error
# that the station would retry for ever.
_MAX_METER_START_WH = 2**63 - 1


class Station16(StationBase, ChargePoint):  # type: ignore[misc]  # the library is untyped
    version = Version.V16

    @handles(Action.boot_notification)
    async def on_boot_notification(
        self,
        charge_point_vendor: str,
        charge_point_model: str,
        firmware_version: str | None = None,
        **_: Any,
    ) -> Any:
        boot = self.station_event(
            StationEventKind.BOOT,
            vendor=charge_point_vendor,
            model=charge_point_model,
            firmware=firmware_version,
        )
        await self.store([boot])
        return call_result.BootNotification(
            current_time=self.now_text(),
            interval=self._ctx.heartbeat_interval_s,
            status=RegistrationStatus.accepted,
        )

    @handles(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> Any:
        return call_result.Heartbeat(current_time=self.now_text())

    @handles(Action.status_notification)
    async def on_status_notification(
        self,
        connector_id: int,
        error_code: str,
        status: str,
        timestamp: str | None = None,
        info: str | None = None,
        vendor_error_code: str | None = None,
        **_: Any,
    ) -> Any:
        ts_ns = self.ts(timestamp, "timestamp") if timestamp is not None else self.now_ns()
        event = StatusChange(
            ts_ns,
            self.station_id,
            connector_id,
            ChargePointStatus(status),
            ChargePointErrorCode(error_code),
            clean_text(vendor_error_code),
            clean_text(info),
        )
        await self.store([event])
        return call_result.StatusNotification()

    @handles(Action.authorize)
    async def on_authorize(self, id_tag: str, **_: Any) -> Any:
        pseudonym, result = self.authorize(id_tag)
        await self.store([Authorize(self.now_ns(), self.station_id, pseudonym, result)])
        return call_result.Authorize(id_tag_info=IdTagInfo(status=AuthorizationStatus16(result)))

    @handles(Action.start_transaction)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> Any:
        ts_ns = self.ts(timestamp, "timestamp")
        if meter_start < 0:
            raise ValueRejectedError("meterStart", "a register reading cannot be negative")
        if meter_start > _MAX_METER_START_WH:
            raise ValueRejectedError("meterStart", f"is beyond {_MAX_METER_START_WH} Wh")
        check_connector_id(connector_id, "connectorId")  # before it takes a place in the book
        pseudonym, result = self.authorize(id_tag)
        # Opened before its events are stored: a retry after a failed store gets the same id.
        key = StartKey(connector_id, pseudonym, ts_ns, meter_start)
        tx_id = await self._ctx.book.start(self.station_id, key, self._ctx.transactions.next_id)
        session_id = f"{self.station_id}-{tx_id}"
        # The answer's idTagInfo is an authorization decision: it is recorded like an Authorize.
        events: list[Event] = [
            Authorize(ts_ns, self.station_id, pseudonym, result),
            SessionStart(
                ts_ns, self.station_id, connector_id, session_id, pseudonym, float(meter_start)
            ),
        ]
        await self.store(events)
        return call_result.StartTransaction(
            transaction_id=tx_id, id_tag_info=IdTagInfo(status=AuthorizationStatus16(result))
        )

    @handles(Action.meter_values)
    async def on_meter_values(
        self,
        connector_id: int,
        meter_value: list[dict[str, Any]],
        transaction_id: int | None = None,
        **_: Any,
    ) -> Any:
        book, sid = self._ctx.book, self.station_id
        tx_key: str | None
        if transaction_id is None:
            tx_key = await book.open_on(sid, connector_id)
        else:
            tx_key = str(transaction_id)
            known = await book.get(sid, tx_key)
            # where it runs, or ran: one stopped lately stays stopped
            runs_on = known.connector_id if known is not None else book.closed_on(sid, tx_key)
            if (
                runs_on is None
                and connector_id > 0
                and await book.open_on(sid, connector_id) is None
            ):
                # A transaction the book never saw begin (before the book existed, under another
                # central system) on a connector free as far as it knows: it runs there now.
                # With another transaction open on the connector it is not the current one
                # (that one's id came from us): an old one's readings uploaded late, which go
                # to the session they name and must not take the connector from the open one.
                await book.open(sid, tx_key, OpenTransaction(connector_id, None))
                runs_on = connector_id
            if connector_id == 0 and runs_on != 0:
                # Connector 0 is the station's main meter (OCPP 1.6, MeterValues.req): its
                # register counts every connector's energy since it was installed. In the
                # session's series beside the connector's own register it would read as a jump
                # and a fall (and wrong energy), whatever transactionId the station adds to it.
                tx_key = None
        session_id = f"{sid}-{tx_key}" if tx_key is not None else None
        readings = await self.readings(meter_value, connector_id, session_id, where="meterValue")
        await self.store(list(readings))
        return call_result.MeterValues()

    @handles(Action.stop_transaction)
    async def on_stop_transaction(
        self,
        meter_stop: int,
        timestamp: str,
        transaction_id: int,
        reason: str | None = None,
        id_tag: str | None = None,
        transaction_data: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        ts_ns = self.ts(timestamp, "timestamp")
        if meter_stop < 0:
            raise ValueRejectedError("meterStop", "a register reading cannot be negative")
        tx_key = str(transaction_id)
        book = self._ctx.book
        tx = await book.get(self.station_id, tx_key)
        # Closed already: the stop again, its answer lost; stored again the same, same connector.
        closed_on = book.closed_on(self.station_id, tx_key) if tx is None else None
        if tx is None and closed_on is None:
            logger.warning(
                "station %s: StopTransaction of a transaction not seen here, connector 0",
                self.station_id,
            )
        connector_id = tx.connector_id if tx is not None else closed_on or 0
        session_id = f"{self.station_id}-{tx_key}"
        events: list[Event] = list(
            await self.readings(transaction_data, connector_id, session_id, where="transactionData")
        )
        # OCPP 1.6: the reason "MAY only be omitted when the Reason is Local".
        events.append(
            SessionStop(
                ts_ns,
                self.station_id,
                connector_id,
                session_id,
                float(meter_stop),
                reason or "Local",
            )
        )
        id_tag_info = None
        if id_tag is not None:
            _pseudonym, result = self.authorize(id_tag)
            id_tag_info = IdTagInfo(status=AuthorizationStatus16(result))
        await self.store(events)
        await book.close(self.station_id, tx_key)
        return call_result.StopTransaction(id_tag_info=id_tag_info)

    @handles(Action.data_transfer)
    async def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, **_: Any
    ) -> Any:
        logger.info(
            "station %s: DataTransfer from vendor %s, message %s",
            self.station_id,
            clean_text(vendor_id),
            clean_text(message_id),
        )
        # No vendor's extension is implemented here: OCPP 1.6 section 4.3 (2.0.1 P02.FR.06)
        # says the answer SHALL then be UnknownVendorId, without data.
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    @handles(Action.security_event_notification)
    async def on_security_event_notification(self, type: str, **_: Any) -> Any:
        kind = clean_text(type) or "unknown"
        self._ctx.stats.security_events[kind] += 1
        logger.warning("station %s: security event %s", self.station_id, kind)
        return call_result.SecurityEventNotification()

    @handles(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, **_: Any) -> Any:
        return call_result.FirmwareStatusNotification()

    @handles(Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(self, **_: Any) -> Any:
        return call_result.DiagnosticsStatusNotification()

    # The security extension's twins of the two above (a station that has it reports logs and
    # signed firmware updates with these): acknowledged alike, nothing stored.
    @handles(Action.log_status_notification)
    async def on_log_status_notification(self, **_: Any) -> Any:
        return call_result.LogStatusNotification()

    @handles(Action.signed_firmware_status_notification)
    async def on_signed_firmware_status_notification(self, **_: Any) -> Any:
        return call_result.SignedFirmwareStatusNotification()
