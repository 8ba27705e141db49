"""OCPP 2.0.1: the CSMS side of a charging station's messages.

Mapping onto the canonical (OCPP 1.6 shaped) events:

- connector_id is the EVSE id (a 2.0.1 EVSE is what 1.6 calls a connector); 0 is the station.
- StatusNotification connectorStatus: Available -> Available, Occupied -> Preparing (plugged in;
  TransactionEvent's chargingState then says Charging, SuspendedEV or SuspendedEVSE; Occupied
  during a transaction whose chargingState is known is that state), Reserved -> Reserved,
  Unavailable -> Unavailable, Faulted -> Faulted (error code OtherError; NotifyEvent says more).
  While one connector of an EVSE is Occupied, what its other connectors report (Unavailable,
  Available, Reserved) is not the EVSE's status and is not stored; a fault is.
- TransactionEvent chargingState, when it differs from the status stored last for the EVSE
  (from a chargingState or a StatusNotification): Charging, SuspendedEV, SuspendedEVSE as
  named; EVConnected and Idle -> Preparing during a transaction, Finishing when it ends. While
  the EVSE's last status is Faulted or Unavailable only Charging is (the station's word on the
  connector stands until it reports it again), nor Finishing after Available (``_INOPERATIVE``).
- The station chooses transactionId, and OCPP 2.0 (part 1, Numbering) says it MUST be unique on
  the station for every started transaction; yet simulators and some firmware count 1, 2, 3...
  again after a reboot or a factory reset, or reuse a small pool. So the session is the
  transactionId AND the time of the transaction's first event: ``session_of``, ``{station_id}-
  {transactionId}@{first event's time, UTC}``, Started's time normally. A function of the event
  alone, it names a Started re-sent after a lost answer (the same message: same timestamp) as
  the first one on any instance, whatever the book still remembers, and a reused id as a new
  session however long ago the earlier one was. Which transaction an event of a known id
  belongs to: ``_place``. Started gives SessionStart (meter_start_wh from its energy register,
  if sent); when Started carries no idToken (plug-in first), SessionStart waits for the first
  event that does, keeping Started's time, or for Ended. When it names no evse (card first:
  the driver badged before plugging in, and a station of several EVSEs does not know which
  one yet), SessionStart waits in the book with the token's pseudonym for the first event
  that names the EVSE: the catalogue takes a session's connector from its start, and its
  readings come on the EVSE. It keeps Started's time (the session began at the card); its
  register is Started's, else that event's (Transaction.Begin comes once the EVSE is known,
  OCTT TC_J_08); Ended before any EVSE sends it on connector 0. A session of no one (an idToken of
  type NoAuthorization, free charging; or Ended before any token) gets a pseudonym of its own,
  derived from its session id: the empty token's pseudonym, shared by every such session, made
  each two of them that overlap at different stations one card in two places
  (concurrent_id_tag). The policy still decides on the empty token.
- stoppedReason keeps its 2.0.1 name, ImmediateReset becoming 1.6's HardReset; absent means Local.
- NotifyEvent: a component's Problem (or Tripped) variable turning true -> Faulted, with the
  techCode as vendor error code; AvailabilityState of a connector or EVSE -> its status.
- BootNotification: a ``boot`` station event, its ``reason`` the station's (PowerUp, Watchdog...).
- ``offline`` and ``seqNo`` need nothing: the charger's timestamps place queued events where they
  were measured, and a resent event is stored again identically (same point, overwritten), an
  Ended re-sent after its transaction closed on the connector the book remembers for it.
  seqNo cannot tell two transactions of one id apart: 2.0.1 Edition 2 recommends that it start
  at 0 in every transaction, so both have the same ones; the timestamps do (``_place``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.datatypes import IdTokenInfoType
from ocpp.v201.enums import (
    Action,
    AuthorizationStatusEnumType,
    DataTransferStatusEnumType,
    RegistrationStatusEnumType,
)

from chargewatch.events import (
    Authorize,
    ChargePointErrorCode,
    ChargePointStatus,
    Event,
    SessionStart,
    SessionStop,
    StationEventKind,
    StatusChange,
)

from .book import ClosedTransaction, OpenTransaction
from .meter import ValueRejectedError
from .rpc import Version
from .station import StationBase, clean_text, handles

__all__ = ["CONNECTOR_STATUS", "Station201", "session_of"]

logger = logging.getLogger(__name__)

CONNECTOR_STATUS: dict[str, ChargePointStatus] = {
    "Available": ChargePointStatus.AVAILABLE,
    "Occupied": ChargePointStatus.PREPARING,
    "Reserved": ChargePointStatus.RESERVED,
    "Unavailable": ChargePointStatus.UNAVAILABLE,
    "Faulted": ChargePointStatus.FAULTED,
}
_CHARGING_STATE: dict[str, ChargePointStatus] = {
    "Charging": ChargePointStatus.CHARGING,
    "SuspendedEV": ChargePointStatus.SUSPENDED_EV,
    "SuspendedEVSE": ChargePointStatus.SUSPENDED_EVSE,
    "EVConnected": ChargePointStatus.PREPARING,
    "Idle": ChargePointStatus.PREPARING,
}
_TRANSACTION_STATES = frozenset(
    s.value for s in _CHARGING_STATE.values() if s is not ChargePointStatus.PREPARING
)
# What the station said of the connector itself (StatusNotification, NotifyEvent) that a
# transaction state does not end: a Faulted or Unavailable connector stays so whatever
# chargingState the transaction reports meanwhile (SuspendedEVSE: offering no energy, which is
# what a fault does; Finishing when the fault stopped it), until the station reports the
# connector again (Occupied, Available...) or it charges again (Charging: its contactor closed,
# energy flows, so it works). A station sends StatusNotification only on a change: stored after
# the fault, such a chargingState would be the EVSE's status until the fault clears, the fault
# hidden. Likewise Available reported before Ended (the car unplugged, then the transaction
# ended): the EVSE is free, not Finishing.
_INOPERATIVE = frozenset({ChargePointStatus.FAULTED.value, ChargePointStatus.UNAVAILABLE.value})
_STOP_REASON = {"ImmediateReset": "HardReset"}
_NO_AUTHORIZATION = "NoAuthorization"  # the idToken type of free charging (its idToken empty)
# Connectors whose status a connection remembers: a station has a few EVSEs of one to three
# connectors each; the largest sites behind one identity a few dozen (book.MAX_OPEN_PER_STATION).
_MAX_CONNECTORS_KEPT = 128
_FAULT_VARIABLES = frozenset({"Problem", "Tripped"})
_FAULT_COMPONENTS: dict[str, ChargePointErrorCode] = {
    "ConnectorPlugRetentionLock": ChargePointErrorCode.CONNECTOR_LOCK_FAILURE,
    "RCD": ChargePointErrorCode.GROUND_FAILURE,
    "OverCurrentProtection": ChargePointErrorCode.OVER_CURRENT_FAILURE,
    "PowerContactor": ChargePointErrorCode.POWER_SWITCH_FAILURE,
    "FiscalMetering": ChargePointErrorCode.POWER_METER_FAILURE,
    "ControlMetering": ChargePointErrorCode.POWER_METER_FAILURE,
    "TokenReader": ChargePointErrorCode.READER_FAILURE,
    "TemperatureSensor": ChargePointErrorCode.HIGH_TEMPERATURE,
}
_ERROR_CODES = {code.value: code for code in ChargePointErrorCode}
_STATUS_COMPONENTS = frozenset({"Connector", "EVSE"})
_NS_PER_S = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def session_of(station_id: str, tx_id: str, first_ns: int) -> str:
    """The session of a 2.0.1 transaction whose first event (Started) happened at ``first_ns``:
    ``CS-1-7@20261124T081500Z``, the fraction of a second too when there is one."""
    seconds, fraction = divmod(first_ns, _NS_PER_S)
    stamp = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y%m%dT%H%M%S")
    if fraction:
        stamp += "." + f"{fraction:09d}".rstrip("0")
    return f"{station_id}-{tx_id}@{stamp}Z"


class _Place(Enum):
    """Which transaction of its id a TransactionEvent belongs to."""

    OPEN = "open"  # the one open under the id
    CLOSED = "closed"  # the one closed lately under the id: late, or re-sent after its answer
    NEW = "new"  # one that begins with this event


def _place(
    started: bool, ts_ns: int, known: OpenTransaction | None, done: ClosedTransaction | None
) -> _Place:
    """A transaction's events come in order (2.0.1 queues them while offline and sends them in
    order), Started first and Ended last, and carry the times the station took them. So:

    - Started of an open or closed id at the time of that transaction's first event is the same
      Started re-sent (its answer was lost; the same message again): that transaction. At any
      other time it begins a new one (an open one of the id was never ended: the station reset).
    - Another event of an open id belongs to it, unless it happened before that transaction
      began and within the previous transaction of the id (from its first event to its Ended):
      then it is one of the previous transaction's, delivered late. (One before the open one
      began and outside the previous one: the station's clock stepped back, it is the open
      one's.)
    - Another event of a closed id within that transaction is one of its own (an Ended re-sent,
      an event late); outside it, it begins a new transaction whose Started did not come (sent
      before the book knew the station, or lost), its clock behind after a reset, maybe. It
      cannot be of an earlier transaction of the id: it would have come before that one began.
    - Of an id never seen (or forgotten): a new transaction.

    Only the latest closed transaction of an id is remembered: an event of an earlier one
    that comes after a later one began breaks the order above, and is taken as the rules say.
    Entries written before sessions were named here (no first time) are taken as the
    transaction of the event, as they were then.
    """
    if started:
        if known is not None and known.first_ns in (None, ts_ns):
            return _Place.OPEN
        if known is None and done is not None and done.first_ns == ts_ns:
            return _Place.CLOSED
        return _Place.NEW
    if known is not None:
        late = (
            done is not None
            and done.ended_ns is not None
            and known.first_ns is not None
            and ts_ns < known.first_ns
            and _within(ts_ns, done)
        )
        return _Place.CLOSED if late else _Place.OPEN
    if done is not None and (done.ended_ns is None or _within(ts_ns, done)):
        return _Place.CLOSED
    return _Place.NEW


def _within(ts_ns: int, done: ClosedTransaction) -> bool:
    """Whether ``ts_ns`` lies within the closed transaction, from its first event to its Ended
    (an end unknown: any time after its beginning)."""
    after_first = done.first_ns is None or done.first_ns <= ts_ns
    return after_first and (done.ended_ns is None or ts_ns <= done.ended_ns)


class Station201(StationBase, ChargePoint):  # type: ignore[misc]  # the library is untyped
    version = Version.V201

    @handles(Action.boot_notification)
    async def on_boot_notification(
        self, charging_station: dict[str, Any], reason: str, **_: Any
    ) -> Any:
        boot = self.station_event(
            StationEventKind.BOOT,
            vendor=charging_station.get("vendor_name"),
            model=charging_station.get("model"),
            firmware=charging_station.get("firmware_version"),
            reason=reason,
        )
        await self.store([boot])
        return call_result.BootNotification(
            current_time=self.now_text(),
            interval=self._ctx.heartbeat_interval_s,
            status=RegistrationStatusEnumType.accepted,
        )

    @handles(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> Any:
        return call_result.Heartbeat(current_time=self.now_text())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (evse, connector) -> connectorStatus last reported on this connection, most recent
        # last: an EVSE's status is that of its connector in use (``_evse_status``).
        self._connectors: OrderedDict[tuple[int, int], str] = OrderedDict()
        # EVSE -> the status of its transaction's latest chargingState (EVSE ids are bounded,
        # ``check_connector_id``), for an Occupied that comes after another status.
        self._charging: dict[int, str] = {}

    @handles(Action.status_notification)
    async def on_status_notification(
        self, timestamp: str, connector_status: str, evse_id: int, connector_id: int, **_: Any
    ) -> Any:
        book, sid = self._ctx.book, self.station_id
        evse_status = self._evse_status(evse_id, connector_id, connector_status)
        if evse_status is None:
            return call_result.StatusNotification()
        status = CONNECTOR_STATUS[evse_status]
        error = (
            ChargePointErrorCode.OTHER_ERROR
            if status is ChargePointStatus.FAULTED
            else ChargePointErrorCode.NO_ERROR
        )
        status = await self._in_use(evse_id, status)
        event = StatusChange(self.ts(timestamp, "timestamp"), sid, evse_id, status, error)
        await self.store([event])
        # The next chargingState is news again after any other status stored here.
        book.set_charging_status(sid, evse_id, status.value)
        return call_result.StatusNotification()

    async def _in_use(self, evse_id: int, status: ChargePointStatus) -> ChargePointStatus:
        """``status`` of the EVSE, but for Occupied (Preparing) during a transaction: its
        chargingState says what the connector does (Charging, SuspendedEV...), the latest this
        connection heard, else the one stored last if it was one."""
        book, sid = self._ctx.book, self.station_id
        if status is not ChargePointStatus.PREPARING or await book.open_on(sid, evse_id) is None:
            return status
        last = self._charging.get(evse_id) or book.charging_status(sid, evse_id)
        return ChargePointStatus(last) if last in _TRANSACTION_STATES else status

    @handles(Action.authorize)
    async def on_authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
        pseudonym, result = self.authorize(id_token["id_token"])
        await self.store([Authorize(self.now_ns(), self.station_id, pseudonym, result)])
        return call_result.Authorize(id_token_info=_token_info(result))

    @handles(Action.meter_values)
    async def on_meter_values(
        self, evse_id: int, meter_value: list[dict[str, Any]], **_: Any
    ) -> Any:
        book, sid = self._ctx.book, self.station_id
        # evseId 0 is the station's main meter (MeterValuesRequest), no transaction's, even when
        # the book has one on "EVSE 0": a transaction whose EVSE is not known yet (Started by a
        # card before the cable, without evse), whose register is not the main meter's.
        tx_id = await book.open_on(sid, evse_id) if evse_id > 0 else None
        tx = await book.get(sid, tx_id) if tx_id is not None else None
        session_id = (tx.session_id or f"{sid}-{tx_id}") if tx is not None else None
        readings = await self.readings(
            meter_value, evse_id, session_id, where="meterValue", v201=True
        )
        await self.store(list(readings))
        return call_result.MeterValues()

    @handles(Action.transaction_event)
    async def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        transaction_info: dict[str, Any],
        meter_value: list[dict[str, Any]] | None = None,
        evse: dict[str, Any] | None = None,
        id_token: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        ts_ns = self.ts(timestamp, "timestamp")
        book, sid = self._ctx.book, self.station_id
        tx_id: str = transaction_info["transaction_id"]
        if not tx_id.strip() or not tx_id.isprintable():
            raise ValueRejectedError(
                "transactionInfo.transactionId", "must be printable, not blank"
            )
        place, known, session_id, first_ns, connector_id = await self._transaction(
            tx_id, event_type == "Started", ts_ns, evse
        )
        readings = await self.readings(
            meter_value, connector_id, session_id, where="meterValue", v201=True
        )
        # The registers in time order: Started's first is where the session began, Ended's
        # last where it stopped (the spec fixes no order for a message's meterValue elements).
        energies = [
            e
            for _ts, e in sorted(
                (r.ts_ns, r.energy_wh) for r in readings if r.energy_wh is not None
            )
        ]
        ended = event_type == "Ended"
        events: list[Event] = []
        pending = known.pending_start if known is not None else None
        pending_id = known.pending_id if known is not None else None
        if event_type == "Started" and known is None:  # new, or re-sent after its end
            pending = (ts_ns, energies[0] if energies else None)
            pending_id = None
        token_info = None
        if id_token is not None:
            pseudonym, result = self.authorize(id_token["id_token"])
            if id_token.get("type") == _NO_AUTHORIZATION:
                pseudonym = self._no_one(session_id)
            token_info = _token_info(result)
            events.append(Authorize(ts_ns, sid, pseudonym, result))
            if pending is not None and pending_id is None:
                pending_id = pseudonym  # the token that started it, not a later one's
        start = self._start(pending, pending_id, connector_id, session_id, energies, ended)
        if start is not None:
            events.append(start)
            pending = pending_id = None
        events += readings
        state = transaction_info.get("charging_state")
        # An event of a closed transaction (re-sent, late) is history: its status is stored
        # at its time, but is not what the EVSE does now (another transaction may run there).
        history = place is _Place.CLOSED
        status_change = self._charging_status(ts_ns, connector_id, state, ended, history)
        if status_change is not None:
            events.append(status_change)
        if ended:
            reason = transaction_info.get("stopped_reason") or "Local"
            events.append(
                SessionStop(
                    ts_ns,
                    sid,
                    connector_id,
                    session_id,
                    energies[-1] if energies else None,
                    _STOP_REASON.get(reason, reason),
                )
            )
        await self.store(events)
        if place is _Place.CLOSED:
            pass  # stays closed; a transaction open under the id is another one
        elif ended:
            kept = ClosedTransaction(connector_id, session_id, first_ns, ts_ns)
            await book.close(sid, tx_id, kept)
        else:
            tx = OpenTransaction(connector_id, pending, None, session_id, first_ns, pending_id)
            await book.open(sid, tx_id, tx)
        if status_change is not None and not history:
            book.set_charging_status(sid, connector_id, status_change.status.value)
        return call_result.TransactionEvent(id_token_info=token_info)

    def _start(
        self,
        pending: tuple[int, float | None] | None,
        pending_id: str | None,
        connector_id: int,
        session_id: str,
        energies: list[float],
        ended: bool,
    ) -> SessionStart | None:
        """The start of a session held since Started (``pending``: its time and register), to
        send now, or None while it waits. It waits for its token (plug-in first) and for its
        EVSE (card first: a Started naming no evse, connector 0 here); the first event that
        brings the last of them sends it, on its EVSE, at Started's time (the session began
        there), its register Started's or else this event's first (the station sends the
        Transaction.Begin values once the EVSE is known, OCTT TC_J_08, J02.FR.19). Ended sends
        what still waits, with no token the session's own pseudonym, on connector 0 if no EVSE
        was ever named: nothing is lost, and its registers are the end's, not a start's."""
        if pending is None or (not ended and (pending_id is None or connector_id == 0)):
            return None
        ts_ns, meter_start_wh = pending
        if meter_start_wh is None and energies and not ended:
            meter_start_wh = energies[0]
        pseudonym = pending_id if pending_id is not None else self._no_one(session_id)
        sid = self.station_id
        return SessionStart(ts_ns, sid, connector_id, session_id, pseudonym, meter_start_wh)

    async def _transaction(
        self, tx_id: str, started: bool, ts_ns: int, evse: dict[str, Any] | None
    ) -> tuple[_Place, OpenTransaction | None, str, int | None, int]:
        """Where an event of ``tx_id`` goes (``_place``): the open transaction it continues
        (None unless OPEN), its session, the time of its first event, its connector.

        CLOSED: an event re-sent after its answer was lost (Ended, most likely) or late: the
        same events again, on that transaction's connector; it stays closed, and the one open
        under its id, if any, stays open."""
        book, sid = self._ctx.book, self.station_id
        known = await book.get(sid, tx_id)
        done = book.closed(sid, tx_id)
        place = _place(started, ts_ns, known, done)
        if place is _Place.OPEN and known is not None:
            session_id, first_ns = known.session_id or f"{sid}-{tx_id}", known.first_ns
        elif place is _Place.CLOSED and done is not None:
            session_id, first_ns = done.session_id or f"{sid}-{tx_id}", done.first_ns
            known = None
        else:
            session_id, first_ns = session_of(sid, tx_id, ts_ns), ts_ns
            known = None
        connector_id = (
            evse["id"]
            if evse is not None
            else known.connector_id
            if known is not None
            else done.connector_id
            if done is not None
            else 0
        )
        return place, known, session_id, first_ns, connector_id

    def _evse_status(self, evse_id: int, connector_id: int, connector_status: str) -> str | None:
        """Records the connector's status; the connectorStatus its EVSE takes from it, or None
        when it says nothing of the EVSE. An EVSE with several connectors (CCS and CHAdeMO,
        say) charges through one at a time and reports the others Unavailable (or Available,
        Reserved) meanwhile, which must not hide the one in use; a fault of any connector is
        the EVSE's, and when it clears the EVSE is the one in use's again (Occupied)."""
        key = (evse_id, connector_id)
        previous = self._connectors.pop(key, None)
        self._connectors[key] = connector_status
        while len(self._connectors) > _MAX_CONNECTORS_KEPT:
            self._connectors.popitem(last=False)
        if connector_status in ("Occupied", "Faulted"):
            return connector_status
        sibling_in_use = any(
            status == "Occupied" and evse == evse_id and connector != connector_id
            for (evse, connector), status in self._connectors.items()
        )
        if not sibling_in_use:
            return connector_status
        return "Occupied" if previous == "Faulted" else None

    def _no_one(self, session_id: str) -> str:
        """The pseudonym of a session that no token names (module docstring)."""
        return self._ctx.pseudonymize(f"{_NO_AUTHORIZATION}:{session_id}")

    def _charging_status(
        self, ts_ns: int, connector_id: int, state: str | None, ended: bool, history: bool
    ) -> StatusChange | None:
        if ended and not history:
            self._charging.pop(connector_id, None)
        if state is None:
            return None
        status = _CHARGING_STATE[state]
        if not ended and not history:
            self._charging[connector_id] = status.value
        if ended and status is ChargePointStatus.PREPARING:
            status = ChargePointStatus.FINISHING
        if not history:
            last = self._ctx.book.charging_status(self.station_id, connector_id)
            if (
                last == status.value
                or (last in _INOPERATIVE and status is not ChargePointStatus.CHARGING)
                or (ended and last == ChargePointStatus.AVAILABLE.value)
            ):
                return None
        return StatusChange(ts_ns, self.station_id, connector_id, status)

    @handles(Action.notify_event)
    async def on_notify_event(self, event_data: list[dict[str, Any]], **_: Any) -> Any:
        changes: list[StatusChange] = []
        for i, item in enumerate(event_data):
            change = self._status_of_event(item, f"eventData.{i}")
            if change is not None:
                # Occupied while the EVSE charges is its transaction's state, as for a
                # StatusNotification.
                status = await self._in_use(change.connector_id, change.status)
                changes.append(change._replace(status=status))
        await self.store(list(changes))
        for change in changes:  # the next chargingState is news again after these
            self._ctx.book.set_charging_status(
                self.station_id, change.connector_id, change.status.value
            )
        return call_result.NotifyEvent()

    def _status_of_event(self, item: dict[str, Any], where: str) -> StatusChange | None:
        component, variable = item["component"], item["variable"]["name"]
        value = str(item["actual_value"]).strip()
        evse = component.get("evse") or {}
        connector_id = int(evse.get("id", 0))
        if variable in _FAULT_VARIABLES and value.lower() == "true" and not item.get("cleared"):
            tech_code = clean_text(item.get("tech_code"))
            error = _FAULT_COMPONENTS.get(component["name"], ChargePointErrorCode.OTHER_ERROR)
            error = _ERROR_CODES.get(tech_code or "", error)
            info = clean_text(f"{component['name']}.{variable}: {item.get('tech_info') or ''}")
            ts_ns = self.ts(item["timestamp"], f"{where}.timestamp")
            return StatusChange(
                ts_ns,
                self.station_id,
                connector_id,
                ChargePointStatus.FAULTED,
                error,
                tech_code,
                info,
            )
        if variable == "AvailabilityState" and component["name"] in _STATUS_COMPONENTS:
            connector = evse.get("connector_id")
            if value in CONNECTOR_STATUS and component["name"] == "Connector" and connector:
                # a connector's state, as a StatusNotification of it says (``_evse_status``)
                value = self._evse_status(connector_id, int(connector), value) or ""
            status = CONNECTOR_STATUS.get(value)
            if status is not None:
                ts_ns = self.ts(item["timestamp"], f"{where}.timestamp")
                return StatusChange(ts_ns, self.station_id, connector_id, status)
        return None

    @handles(Action.security_event_notification)
    async def on_security_event_notification(self, type: str, **_: Any) -> Any:
        kind = clean_text(type) or "unknown"
        self._ctx.stats.security_events[kind] += 1
        logger.warning("station %s: security event %s", self.station_id, kind)
        return call_result.SecurityEventNotification()

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
        return call_result.DataTransfer(status=DataTransferStatusEnumType.unknown_vendor_id)

    @handles(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, **_: Any) -> Any:
        return call_result.FirmwareStatusNotification()

    @handles(Action.log_status_notification)
    async def on_log_status_notification(self, **_: Any) -> Any:
        return call_result.LogStatusNotification()


def _token_info(result: Any) -> IdTokenInfoType:
    return IdTokenInfoType(status=AuthorizationStatusEnumType(result.value))
