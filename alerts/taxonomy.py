"""The fault taxonomy: every condition chargewatch alerts on, and what it becomes as an alert.

One table in code, in four parts keyed by what raises the condition:

- ``BY_ERROR_CODE``: every OCPP 1.6 ``ChargePointErrorCode`` a connector reports in a
  StatusNotification. OCPP 2.0.1 faults arrive as the same codes: the gateway
  (``ingest.ocppj.v201``) turns a Faulted StatusNotification into ``OtherError`` and a NotifyEvent
  whose component's ``Problem`` or ``Tripped`` variable turns true into the 1.6 code of that
  component (``RCD`` is ``GroundFailure``, ``PowerContactor`` is ``PowerSwitchFailure``,
  ``TokenReader`` is ``ReaderFailure``...; ``AlertType.ocpp201`` lists them), so one table covers
  both versions;
- ``STATION_OFFLINE``: a station silent for longer than its heartbeat allows;
- ``BY_KIND``: every anomaly kind of CONTRACTS.md section 3, keyed by its string (a kind the
  detectors do not have yet is ready here before they do);
- ``BY_SERVICE_CONDITION``: chargewatch's own health.

Each entry gives the ``alertname``, the ``owner`` (who fixes it) and the default ``severity``:
``page`` for what hurts a driver now (a stall in a live session, a Faulted connector, a station
offline, energy flowing with no session) or blinds the monitor; ``ticket`` for what needs a look
this week (meter faults, billing doubts, a cloned card). An error code reported while the
connector still works (OCPP 1.6 allows a code with a status other than Faulted: a warning) is a
ticket; see ``severity_of_status``. The ``runbook`` says what to check, in order, and goes into
the alert's annotations.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from chargewatch.events import ChargePointErrorCode, ChargePointStatus

__all__ = [
    "BY_ERROR_CODE",
    "BY_KIND",
    "BY_SERVICE_CONDITION",
    "STATION_OFFLINE",
    "AlertType",
    "Owner",
    "ServiceCondition",
    "Severity",
    "all_types",
    "fault_alertnames",
    "markdown_table",
    "severity_of_status",
]


class Owner(StrEnum):
    """Who fixes it: the team an alert is routed to."""

    CHARGER = "charger"
    VEHICLE = "vehicle"
    METER = "meter"
    GRID = "grid"
    BILLING = "billing"
    SERVICE = "service"


class Severity(StrEnum):
    PAGE = "page"  # someone gets up: a driver is hurt now, or the monitor is blind
    TICKET = "ticket"  # a look this week


class ServiceCondition(StrEnum):
    """chargewatch's own health, as the service reports it."""

    SPOOL_BACKLOG_GROWING = "spool_backlog_growing"
    INFLUX_UNREACHABLE = "influx_unreachable"
    DETECTION_FAILING = "detection_failing"
    DETECTION_LATE = "detection_late"


@dataclass(frozen=True, slots=True)
class AlertType:
    """What one condition becomes as an alert."""

    alertname: str
    owner: Owner
    severity: Severity
    title: str  # the start of the summary: "Charging stalled"
    runbook: str
    ocpp201: tuple[str, ...] = ()  # 2.0.1 NotifyEvent components reported as this error code


_P, _T = Severity.PAGE, Severity.TICKET

_FAULTED = "Faulted means the connector is out of service: drivers cannot charge on it now. "

BY_ERROR_CODE: Mapping[ChargePointErrorCode, AlertType] = MappingProxyType(
    {
        ChargePointErrorCode.CONNECTOR_LOCK_FAILURE: AlertType(
            "ConnectorLockFailure",
            Owner.CHARGER,
            _P,
            "Connector lock failed",
            _FAULTED + "1. Check whether a cable is stuck in the socket (a driver may be unable "
            "to leave): unlock remotely (UnlockConnector) and call the site if that fails. "
            "2. Look for debris or a bent pin in the socket's lock mechanism on the next visit. "
            "3. If it repeats on one connector, replace the lock actuator.",
            ("ConnectorPlugRetentionLock",),
        ),
        ChargePointErrorCode.EV_COMMUNICATION_ERROR: AlertType(
            "VehicleCommunicationError",
            Owner.VEHICLE,
            _P,
            "Charger cannot talk to the vehicle",
            _FAULTED + "1. See whether it follows one vehicle model (the session's car) or "
            "every car on this connector. 2. One model: a known interoperability issue; note "
            "the car's firmware and the charger's, and report to the vendor. 3. Every car: "
            "inspect the cable and the plug's control pins (CP/PP, or the CCS PLC modem); "
            "a soft reset (Reset Soft) often clears a hung modem.",
        ),
        ChargePointErrorCode.GROUND_FAILURE: AlertType(
            "GroundFailure",
            Owner.CHARGER,
            _P,
            "Ground fault (RCD tripped)",
            _FAULTED + "This is an electrical-safety trip: do not reset it remotely more than "
            "once. 1. If it tripped during a session, the car may have an insulation fault: "
            "note the session and the car. 2. If it trips without a car, send an electrician "
            "to test the RCD, the cable's insulation and moisture in the housing. "
            "3. Keep the connector out of service until the cause is found.",
            ("RCD",),
        ),
        ChargePointErrorCode.HIGH_TEMPERATURE: AlertType(
            "ChargerOverheating",
            Owner.CHARGER,
            _P,
            "Charger temperature too high",
            _FAULTED + "1. Check the site's ambient temperature and whether the unit is in "
            "direct sun. 2. Check the cooling: fans running, air filters clean, liquid-cooled "
            "cables' coolant level. 3. If power was derated before the trip (early_taper on "
            "this connector), plan a visit for the power modules.",
            ("TemperatureSensor",),
        ),
        ChargePointErrorCode.INTERNAL_ERROR: AlertType(
            "ChargerInternalError",
            Owner.CHARGER,
            _P,
            "Charger internal error",
            _FAULTED + "1. Read the vendor error code and info in the description, and the "
            "vendor's error list. 2. Try one soft reset (Reset Soft), then one hard reset if "
            "it stays Faulted. 3. Still Faulted: open a vendor ticket with the station's "
            "diagnostics (GetDiagnostics) and send a technician.",
        ),
        ChargePointErrorCode.LOCAL_LIST_CONFLICT: AlertType(
            "LocalListConflict",
            Owner.BILLING,
            _P,
            "Local authorization list conflict",
            "The charger's local list of id tags disagrees with the back office: drivers may "
            "be refused or let in wrongly. 1. Compare the station's list version "
            "(GetLocalListVersion) with the back office's. 2. Send the full list again "
            "(SendLocalList, Full). 3. If it recurs, check for two back offices managing the "
            "station.",
        ),
        ChargePointErrorCode.NO_ERROR: AlertType(
            "ConnectorFaulted",
            Owner.CHARGER,
            _P,
            "Connector Faulted",
            _FAULTED + "The charger gave no error code. 1. Check the vendor error code and "
            "info in the description. 2. Try one soft reset (Reset Soft). 3. Still Faulted "
            "after a few minutes: send a technician with the station's diagnostics.",
        ),
        ChargePointErrorCode.OTHER_ERROR: AlertType(
            "ConnectorFaulted",
            Owner.CHARGER,
            _P,
            "Connector Faulted",
            _FAULTED + "OCPP 2.0.1 stations report every fault this way until their NotifyEvent "
            "names the component. 1. Read the vendor error code and info in the description. "
            "2. Try one soft reset (Reset Soft). 3. Still Faulted after a few minutes: send a "
            "technician with the station's diagnostics (GetDiagnostics / GetLog).",
        ),
        ChargePointErrorCode.OVER_CURRENT_FAILURE: AlertType(
            "OverCurrentTrip",
            Owner.CHARGER,
            _P,
            "Over-current protection tripped",
            _FAULTED + "1. If it tripped during a session, see whether the car drew more than "
            "the offered limit (the session's current_a against its power_offered_w): a car "
            "fault, note the model. 2. If it trips with several cars, check the charger's "
            "current measurement and the breaker's rating. 3. Reset once; if it trips again, "
            "send an electrician.",
            ("OverCurrentProtection",),
        ),
        ChargePointErrorCode.OVER_VOLTAGE: AlertType(
            "GridVoltageOutOfRange",
            Owner.GRID,
            _P,
            "Supply voltage too high",
            _FAULTED + "1. See whether every station of the site reports it: a supply problem, "
            "call the grid operator or the site's electrician. 2. Check voltage_v in the "
            "station's readings for how high and since when. 3. One station only: have its "
            "voltage measurement checked.",
        ),
        ChargePointErrorCode.POWER_METER_FAILURE: AlertType(
            "PowerMeterFailure",
            Owner.METER,
            _P,
            "Power meter failed",
            _FAULTED + "Sessions on it cannot be billed from its register. 1. Check the meter's "
            "communication (Modbus/RS485 wiring, its display). 2. Mark sessions since the "
            "fault for billing review. 3. A calibrated (MID/Eichrecht) meter must be replaced "
            "by a certified technician, and the replacement recorded with its start reading.",
            ("FiscalMetering", "ControlMetering"),
        ),
        ChargePointErrorCode.POWER_SWITCH_FAILURE: AlertType(
            "PowerSwitchFailure",
            Owner.CHARGER,
            _P,
            "Power contactor failed",
            _FAULTED + "A contactor that does not open is a safety risk. 1. If energy still "
            "flows with no session (EnergyWithoutSession on this connector), cut power to the "
            "station. 2. Send a technician to replace the contactor. 3. Do not reset it back "
            "into service remotely.",
            ("PowerContactor",),
        ),
        ChargePointErrorCode.READER_FAILURE: AlertType(
            "CardReaderFailure",
            Owner.CHARGER,
            _P,
            "Card reader failed",
            _FAULTED + "Drivers cannot start with a card; app and remote starts may still work. "
            "1. Try a soft reset (Reset Soft). 2. Check that remote start (RemoteStart"
            "Transaction) works, and tell support so they can start sessions for drivers. "
            "3. Replace the reader on the next visit.",
            ("TokenReader",),
        ),
        ChargePointErrorCode.RESET_FAILURE: AlertType(
            "ChargerResetFailure",
            Owner.CHARGER,
            _P,
            "Charger failed to reset",
            _FAULTED + "1. Try a hard reset (Reset Hard) once. 2. If it does not come back, "
            "power-cycle it from the site's breaker (call the site). 3. Still failing: a "
            "firmware problem; check whether a firmware update was in progress "
            "(FirmwareStatusNotification) and open a vendor ticket.",
        ),
        ChargePointErrorCode.UNDER_VOLTAGE: AlertType(
            "GridVoltageOutOfRange",
            Owner.GRID,
            _P,
            "Supply voltage too low",
            _FAULTED + "1. See whether every station of the site reports it: a supply problem "
            "(an overloaded feeder, a lost phase), call the grid operator or the site's "
            "electrician. 2. Check voltage_v in the station's readings. 3. One station only: "
            "check its supply cable and terminals for a loose connection.",
        ),
        ChargePointErrorCode.WEAK_SIGNAL: AlertType(
            "WeakSignal",
            Owner.CHARGER,
            _P,
            "Weak mobile signal",
            "The station's link to us is poor: expect data gaps, late status and failed "
            "remote commands. 1. Check the modem's signal figures in the vendor portal. "
            "2. Look for a changed antenna or a new obstruction at the site. 3. Consider "
            "another carrier's SIM or an external antenna.",
        ),
    }
)

STATION_OFFLINE = AlertType(
    "StationOffline",
    Owner.CHARGER,
    _P,
    "Station offline",
    "The station has sent nothing (no heartbeat, status or readings) for longer than its "
    "heartbeat interval allows: drivers may be unable to start, and nothing it measures reaches "
    "us. 1. Check whether the whole site is offline (a site router, a power cut) or only this "
    "station. 2. Check the station's last disconnect reason and its modem in the vendor "
    "portal. 3. Call the site to power-cycle the station; send a technician if it stays away.",
)

BY_KIND: Mapping[str, AlertType] = MappingProxyType(
    {
        "stall": AlertType(
            "ChargingStall",
            Owner.CHARGER,
            _P,
            "Charging stalled",
            "Power stopped mid-session while the car was not full and nothing lowered the "
            "offered limit: the driver is waiting and getting nothing. 1. Look at the "
            "session's profile and the connector's status (SuspendedEVSE points at the "
            "charger, SuspendedEV at the car). 2. Charger side: a soft reset after the session "
            "ends; check the power modules if it repeats on this connector. 3. Car side: note "
            "the model; one model repeatedly stalling is an interoperability issue for the "
            "vendor.",
        ),
        "early_taper": AlertType(
            "PowerTaperedEarly",
            Owner.CHARGER,
            _T,
            "Power tapered early",
            "Power fell well below what the car and charger should deliver at this state of "
            "charge, with no lower offered limit to explain it: thermal derating, a failing "
            "power module, or a cold battery. 1. Compare with other sessions on this "
            "connector: every car slow points at the charger. 2. Check the charger's "
            "temperatures and cooling (filters, fans, coolant). 3. One car only in cold "
            "weather: the battery, not the charger; no action.",
        ),
        "meter_stuck": AlertType(
            "MeterRegisterStuck",
            Owner.METER,
            _T,
            "Meter register stuck",
            "The energy register stayed constant while power clearly flowed: the energy of "
            "these sessions is not being billed. 1. Check the meter's communication and "
            "display. 2. Mark the affected sessions for billing review (bill from the power "
            "integral if the tariff allows). 3. Replace the meter if it repeats.",
        ),
        "meter_backwards": AlertType(
            "MeterRegisterBackwards",
            Owner.METER,
            _T,
            "Meter register went backwards",
            "The energy register decreased: a meter reset, a wrap-around or a replaced meter. "
            "1. Check whether the meter was replaced or the charger's firmware updated around "
            "that time. 2. Correct the affected sessions' energy for billing (register before "
            "and after the step are in the description). 3. If it happens without a service "
            "visit, the meter or its firmware is faulty: replace it.",
        ),
        "meter_jump": AlertType(
            "MeterRegisterJump",
            Owner.METER,
            _T,
            "Meter register jumped",
            "The register rose by more than the connector could physically deliver in that "
            "interval: the session would be over-billed. 1. Hold the session's invoice. "
            "2. Compare the step with the connector's rated power (in the description). "
            "3. Check the meter's communication for corrupted values; replace the meter if "
            "it repeats.",
        ),
        "meter_mismatch": AlertType(
            "MeterEnergyMismatch",
            Owner.METER,
            _T,
            "Meter energy and power disagree",
            "The register's energy and the integral of power disagree by more than 15 % over "
            "the session: a miscalibrated meter or a Wh/kWh mix-up in the charger's "
            "configuration. 1. Look at the ratio in the description: x1000 is a unit mix-up "
            "(fix the charger's meter configuration). 2. Otherwise compare with other "
            "sessions on this connector. 3. A consistent error: have the meter calibrated or "
            "replaced, and review billing since it started.",
        ),
        "data_gap": AlertType(
            "ReadingsMissing",
            Owner.CHARGER,
            _T,
            "Readings missing during a session",
            "No readings arrived for more than 5 sampling intervals of an active session. "
            "1. See whether the station disconnected in that time (a weak signal, a site "
            "network outage). 2. Check the station's MeterValueSampleInterval configuration. "
            "3. If the station queues readings while offline, they may still arrive; if not, "
            "the session's energy must come from its start and stop registers.",
        ),
        "clock_fault": AlertType(
            "ChargerClockWrong",
            Owner.CHARGER,
            _T,
            "Charger clock wrong",
            "Timestamps went out of order, into the future or before the session start "
            "(a charger that booted with a 1970 clock). Its readings land at the wrong time. "
            "1. Check the station's time source (NTP, or the time we send in Heartbeat and "
            "BootNotification answers). 2. Reboot it once it has network time. 3. If it "
            "loses time at every power cut, its real-time-clock battery is dead.",
        ),
        "unauthorized_energy": AlertType(
            "EnergyWithoutSession",
            Owner.BILLING,
            _P,
            "Energy flowing without a session",
            "Energy is delivered on a connector with no session open, or to an id tag that was "
            "not accepted: someone charges for free, or a contactor is stuck closed. "
            "1. Check the connector's status and whether a car is plugged in. 2. A stuck "
            "contactor (power with no car): cut power to the station, send a technician. "
            "3. A car charging without authorization: stop it remotely (RemoteStop"
            "Transaction / ChangeAvailability) and check the station's authorization settings "
            "(FreeVend, LocalAuthorizeOffline).",
        ),
        "soc_inconsistent": AlertType(
            "VehicleSocInconsistent",
            Owner.VEHICLE,
            _T,
            "Vehicle state of charge inconsistent",
            "The car's reported state of charge contradicts the energy delivered, or its "
            "battery temperature is out of range. 1. See whether it follows one car model "
            "(the car's reporting) or this connector (the charger's ISO 15118 / CHAdeMO "
            "stack). 2. A battery temperature out of range: tell support in case the driver "
            "calls. 3. Report repeated cases to the vendor with the session's profile.",
        ),
        "concurrent_id_tag": AlertType(
            "IdTagInConcurrentUse",
            Owner.BILLING,
            _T,
            "One id tag in two places at once",
            "One id tag was used in two overlapping sessions at different stations: a cloned "
            "card or shared credentials. 1. Compare the two sessions' stations and times "
            "(could one person be at both?). 2. Block the tag and issue the customer a new "
            "card. 3. Review the tag's recent sessions for other clones.",
        ),
    }
)

BY_SERVICE_CONDITION: Mapping[ServiceCondition, AlertType] = MappingProxyType(
    {
        ServiceCondition.SPOOL_BACKLOG_GROWING: AlertType(
            "SpoolBacklogGrowing",
            Owner.SERVICE,
            _T,
            "Ingest spool backlog growing",
            "Events arrive faster than they reach InfluxDB; when the spool is full, ingest "
            "refuses events (chargers queue or lose them). 1. Check InfluxDB's health and "
            "write latency. 2. Check the spool's size and rate in /metrics and how long until "
            "it is full. 3. If InfluxDB is fine, the writer is the bottleneck: look for "
            "rejected batches in the log.",
        ),
        ServiceCondition.INFLUX_UNREACHABLE: AlertType(
            "InfluxDBUnreachable",
            Owner.SERVICE,
            _P,
            "InfluxDB unreachable",
            "chargewatch cannot reach InfluxDB: events pile up in the spool and detection has "
            "no data, so no charging alert can fire. 1. Check that InfluxDB runs and answers "
            "/ping. 2. Check the network path and the credentials (a 401 is in the log). "
            "3. Watch the spool: it holds events until InfluxDB is back, up to its limit.",
        ),
        ServiceCondition.DETECTION_FAILING: AlertType(
            "DetectionJobFailing",
            Owner.SERVICE,
            _P,
            "Detection job failing",
            "The scheduled detection job raises errors: no charging alert can fire while it "
            "does. 1. Read the job's last error in the log. 2. A model error: roll back to "
            "the previous model (chargewatch models rollback). 3. A data error: find the "
            "station or window it names and report it.",
        ),
        ServiceCondition.DETECTION_LATE: AlertType(
            "DetectionJobLate",
            Owner.SERVICE,
            _T,
            "Detection job late",
            "The detection job runs, but takes longer than its interval or has not finished "
            "a run recently: alerts arrive late. 1. Compare the job's duration in /metrics "
            "with its interval. 2. Check the machine's CPU and InfluxDB's query latency. "
            "3. Raise the interval or add instances (detection partitions by station).",
        ),
    }
)


def severity_of_status(entry: AlertType, status: ChargePointStatus) -> Severity:
    """The severity of an error code reported with ``status``: the entry's when the connector
    is Faulted (out of service), a ticket when it still works (an OCPP 1.6 warning)."""
    return entry.severity if status is ChargePointStatus.FAULTED else Severity.TICKET


def all_types() -> Iterator[AlertType]:
    """Every entry of the table, once per alertname and title (the README's rows)."""
    seen: set[tuple[str, str]] = set()
    for entry in (
        *BY_ERROR_CODE.values(),
        STATION_OFFLINE,
        *BY_KIND.values(),
        *BY_SERVICE_CONDITION.values(),
    ):
        if (entry.alertname, entry.title) not in seen:
            seen.add((entry.alertname, entry.title))
            yield entry


def fault_alertnames() -> tuple[str, ...]:
    """The alertnames of connector faults (status codes), sorted: the sources of inhibition."""
    return tuple(sorted({entry.alertname for entry in BY_ERROR_CODE.values()}))


def markdown_table() -> str:
    """The taxonomy as a Markdown table, for the README."""
    rows = ["| raised by | alertname | owner | severity | summary |", "|---|---|---|---|---|"]
    sources: list[tuple[str, AlertType]] = [
        *((f"error code `{code.value}`", entry) for code, entry in BY_ERROR_CODE.items()),
        ("station liveness", STATION_OFFLINE),
        *((f"kind `{kind}`", entry) for kind, entry in BY_KIND.items()),
        *((f"service `{c.value}`", entry) for c, entry in BY_SERVICE_CONDITION.items()),
    ]
    for source, entry in sources:
        rows.append(
            f"| {source} | `{entry.alertname}` | {entry.owner.value} | "
            f"{entry.severity.value} | {entry.title} |"
        )
    return "\n".join(rows) + "\n"
