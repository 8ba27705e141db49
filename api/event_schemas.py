"""The event format (CONTRACTS.md section 1) as OpenAPI schemas, for generated clients and fuzzers.

These models only describe ``POST /api/v1/events``'s request body in the OpenAPI document: the
route never validates with them (``chargewatch.events.EventDecoder`` does, event by event, with
the same rules: the ranges below come from it). Unknown keys are allowed and ignored; numbers may
also come as numeric strings, as OCPP 1.6 sends them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    RootModel,
    TypeAdapter,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from chargewatch.events import (
    MAX_CONNECTOR_ID,
    MAX_HEARTBEAT_INTERVAL_S,
    READING_RANGES,
    AuthorizationStatus,
    ChargePointErrorCode,
    ChargePointStatus,
    StationEventKind,
)

__all__ = ["event_batch_schemas"]

Id = Annotated[str, Field(min_length=1, max_length=128, description="printable text")]
ConnectorId = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_CONNECTOR_ID,
        description="the connector (OCPP 1.6) or EVSE (2.0.1); 0 is the station itself",
    ),
]
NumericString = Annotated[str, Field(pattern=r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")]
Ts = Annotated[AwareDatetime, Field(description="RFC 3339 with a zone: when it was measured")]


Measured = float | NumericString | None


@dataclass(frozen=True, slots=True)
class InRange:
    """Gives the number of a ``Measured`` value the kernel's range for reading field ``key``."""

    key: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        low, high = READING_RANGES[self.key]
        for option in schema.get("anyOf", ()):
            if option.get("type") == "number":
                if low > -sys.float_info.max:
                    option["minimum"] = low
                if high < sys.float_info.max:
                    option["maximum"] = high
        return schema


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown keys are ignored


class ReadingEvent(_Event):
    """One meter sample of a connector; null or absent means not measured."""

    type: Literal["reading"]
    ts: Ts
    station_id: Id
    connector_id: ConnectorId
    session_id: Id | None = None
    energy_wh: Annotated[Measured, InRange("energy_wh")] = Field(
        None, description="cumulative import register, Wh"
    )
    power_w: Annotated[Measured, InRange("power_w")] = Field(
        None, description="W; negative when exporting"
    )
    power_offered_w: Annotated[Measured, InRange("power_offered_w")] = Field(
        None, description="the charger's limit, W"
    )
    current_a: Annotated[Measured, InRange("current_a")] = Field(None, description="A")
    voltage_v: Annotated[Measured, InRange("voltage_v")] = Field(None, description="V")
    soc_pct: Annotated[Measured, InRange("soc_pct")] = Field(
        None, description="the car's state of charge, %"
    )
    temperature_c: Annotated[Measured, InRange("temperature_c")] = Field(None, description="°C")


class SessionStartEvent(_Event):
    type: Literal["session_start"]
    ts: Ts
    station_id: Id
    connector_id: ConnectorId
    session_id: Id
    id_tag: Id = Field(description="pseudonymized on the way in; never stored in clear")
    meter_start_wh: Annotated[Measured, InRange("energy_wh")] = Field(
        None, description="the register at the start, Wh"
    )


class SessionStopEvent(_Event):
    type: Literal["session_stop"]
    ts: Ts
    station_id: Id
    connector_id: ConnectorId
    session_id: Id
    meter_stop_wh: Annotated[Measured, InRange("energy_wh")] = Field(
        None, description="the register at the stop, Wh"
    )
    reason: Id | None = Field(default=None, description="OCPP 1.6 stop reason")


class StatusEvent(_Event):
    type: Literal["status"]
    ts: Ts
    station_id: Id
    connector_id: ConnectorId
    status: ChargePointStatus
    error_code: ChargePointErrorCode | None = None
    vendor_error_code: Id | None = None
    info: Annotated[str, Field(max_length=1024)] | None = None


class AuthorizeEvent(_Event):
    type: Literal["authorize"]
    ts: Ts
    station_id: Id
    id_tag: Id = Field(description="pseudonymized on the way in; never stored in clear")
    result: AuthorizationStatus


class StationEvent(_Event):
    """What is known of a station itself, for liveness (offline alerts); part of no session."""

    type: Literal["station"]
    ts: Ts
    station_id: Id
    event: StationEventKind
    vendor: Id | None = None
    model: Id | None = None
    firmware: Id | None = None
    ocpp_version: Id | None = Field(default=None, description="e.g. ocpp1.6, ocpp2.0.1")
    heartbeat_interval_s: (
        Annotated[float, Field(ge=1, le=MAX_HEARTBEAT_INTERVAL_S)] | NumericString | None
    ) = Field(default=None, description="the heartbeat interval the central system asked for, s")
    reason: Annotated[str, Field(max_length=1024)] | None = Field(
        default=None, description="a disconnect's cause, or a boot's"
    )


AnyEvent = Annotated[
    ReadingEvent
    | SessionStartEvent
    | SessionStopEvent
    | StatusEvent
    | AuthorizeEvent
    | StationEvent,
    Field(discriminator="type"),
]


class EventBatch(RootModel[list[AnyEvent]]):
    """A JSON array of events. Each bad event is one rejection; the others are stored."""


def event_batch_schemas() -> dict[str, Any]:
    """``EventBatch`` and the schemas it refers to, for the OpenAPI document's components."""
    schema = TypeAdapter(EventBatch).json_schema(ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = schema.pop("$defs", {})
    return {**defs, "EventBatch": schema}
