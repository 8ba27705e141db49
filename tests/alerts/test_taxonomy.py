"""The fault taxonomy: complete, consistent, and paging for what hurts a driver now."""

from __future__ import annotations

import re

import pytest

from alerts.taxonomy import (
    BY_ERROR_CODE,
    BY_KIND,
    BY_SERVICE_CONDITION,
    STATION_OFFLINE,
    AlertType,
    Owner,
    ServiceCondition,
    Severity,
    all_types,
    fault_alertnames,
    markdown_table,
    severity_of_status,
)
from chargewatch.events import ChargePointErrorCode, ChargePointStatus
from chargewatch.kinds import AnomalyKind

# CONTRACTS.md section 3, in its order.
CONTRACT_KINDS = (
    "stall",
    "early_taper",
    "meter_stuck",
    "meter_backwards",
    "meter_jump",
    "meter_mismatch",
    "data_gap",
    "clock_fault",
    "unauthorized_energy",
    "soc_inconsistent",
    "concurrent_id_tag",
)

P, T = Severity.PAGE, Severity.TICKET
E = ChargePointErrorCode

# (entry, alertname, owner, severity): what the issue asks, and the name operators will see.
EXPECTED: list[tuple[AlertType, str, Owner, Severity]] = [
    # A driver is hurt now: page.
    (BY_KIND["stall"], "ChargingStall", Owner.CHARGER, P),
    (BY_KIND["unauthorized_energy"], "EnergyWithoutSession", Owner.BILLING, P),
    (STATION_OFFLINE, "StationOffline", Owner.CHARGER, P),
    (BY_ERROR_CODE[E.NO_ERROR], "ConnectorFaulted", Owner.CHARGER, P),
    (BY_ERROR_CODE[E.OTHER_ERROR], "ConnectorFaulted", Owner.CHARGER, P),
    (BY_ERROR_CODE[E.GROUND_FAILURE], "GroundFailure", Owner.CHARGER, P),
    (BY_ERROR_CODE[E.EV_COMMUNICATION_ERROR], "VehicleCommunicationError", Owner.VEHICLE, P),
    (BY_ERROR_CODE[E.OVER_VOLTAGE], "GridVoltageOutOfRange", Owner.GRID, P),
    (BY_ERROR_CODE[E.UNDER_VOLTAGE], "GridVoltageOutOfRange", Owner.GRID, P),
    (BY_ERROR_CODE[E.POWER_METER_FAILURE], "PowerMeterFailure", Owner.METER, P),
    # A look this week: ticket.
    (BY_KIND["early_taper"], "PowerTaperedEarly", Owner.CHARGER, T),
    (BY_KIND["meter_stuck"], "MeterRegisterStuck", Owner.METER, T),
    (BY_KIND["meter_backwards"], "MeterRegisterBackwards", Owner.METER, T),
    (BY_KIND["meter_jump"], "MeterRegisterJump", Owner.METER, T),
    (BY_KIND["meter_mismatch"], "MeterEnergyMismatch", Owner.METER, T),
    (BY_KIND["data_gap"], "ReadingsMissing", Owner.CHARGER, T),
    (BY_KIND["clock_fault"], "ChargerClockWrong", Owner.CHARGER, T),
    (BY_KIND["soc_inconsistent"], "VehicleSocInconsistent", Owner.VEHICLE, T),
    (BY_KIND["concurrent_id_tag"], "IdTagInConcurrentUse", Owner.BILLING, T),
    # The monitor's own health: blind is a page, slow is a ticket.
    (BY_SERVICE_CONDITION[ServiceCondition.INFLUX_UNREACHABLE], "InfluxDBUnreachable",
     Owner.SERVICE, P),
    (BY_SERVICE_CONDITION[ServiceCondition.DETECTION_FAILING], "DetectionJobFailing",
     Owner.SERVICE, P),
    (BY_SERVICE_CONDITION[ServiceCondition.DETECTION_LATE], "DetectionJobLate", Owner.SERVICE, T),
    (BY_SERVICE_CONDITION[ServiceCondition.SPOOL_BACKLOG_GROWING], "SpoolBacklogGrowing",
     Owner.SERVICE, T),
]  # fmt: skip


@pytest.mark.parametrize(("entry", "alertname", "owner", "severity"), EXPECTED)
def test_entries_name_owner_and_severity(
    entry: AlertType, alertname: str, owner: Owner, severity: Severity
) -> None:
    assert (entry.alertname, entry.owner, entry.severity) == (alertname, owner, severity)


def test_every_error_code_kind_and_service_condition_has_an_entry() -> None:
    assert set(BY_ERROR_CODE) == set(ChargePointErrorCode)
    assert tuple(BY_KIND) == CONTRACT_KINDS
    assert {kind.value for kind in AnomalyKind} <= set(BY_KIND)
    assert set(BY_SERVICE_CONDITION) == set(ServiceCondition)


def test_a_faulted_connector_pages_and_a_working_one_with_a_code_is_a_ticket() -> None:
    for code, entry in BY_ERROR_CODE.items():
        assert severity_of_status(entry, ChargePointStatus.FAULTED) is Severity.PAGE, code
        for status in set(ChargePointStatus) - {ChargePointStatus.FAULTED}:
            assert severity_of_status(entry, status) is Severity.TICKET, (code, status)


def test_one_alertname_has_one_owner_and_names_are_camel_case() -> None:
    owners: dict[str, set[Owner]] = {}
    for entry in all_types():
        owners.setdefault(entry.alertname, set()).add(entry.owner)
        assert re.fullmatch(r"[A-Z][a-z]+(?:[A-Z][a-z]*|DB)+", entry.alertname), entry.alertname
    assert {name: o for name, o in owners.items() if len(o) > 1} == {}


def test_runbooks_say_what_to_check_in_order() -> None:
    for entry in all_types():
        assert len(entry.runbook) > 200, entry.alertname
        steps = [entry.runbook.find(f"{n}. ") for n in (1, 2, 3)]
        assert -1 not in steps and steps == sorted(steps), entry.alertname


def test_ocpp201_components_are_listed_where_the_gateway_maps_them() -> None:
    from ingest.ocppj import v201

    mapped = v201._FAULT_COMPONENTS  # the gateway's 2.0.1 component -> 1.6 code table
    listed = {name: code for code, entry in BY_ERROR_CODE.items() for name in entry.ocpp201}
    assert listed == mapped


def test_fault_alertnames_are_those_of_error_codes_only() -> None:
    names = fault_alertnames()
    assert "ConnectorFaulted" in names and "GroundFailure" in names
    assert STATION_OFFLINE.alertname not in names
    assert not set(names) & {entry.alertname for entry in BY_KIND.values()}


def test_the_readme_table_has_a_row_per_source() -> None:
    table = markdown_table()
    rows = table.strip().splitlines()[2:]
    assert len(rows) == len(BY_ERROR_CODE) + 1 + len(BY_KIND) + len(BY_SERVICE_CONDITION)
    assert "| error code `GroundFailure` | `GroundFailure` | charger | page |" in table
