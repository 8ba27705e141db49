"""Session drill-down: one session, picked by id, as a person reads it.

The session id is typed or comes in a link (``var-session_id``, as alerts link it); its station
is looked up from the session's profile, and the readings are then found by station tag, time and
session, never by scanning every station. Flags are drawn as annotations over the curves.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DashboardCursorSync,
    Threshold,
    ThresholdsMode,
)

from .panels import SESSION_UID, TAGS, query, reduce, transform
from .targets import influx_annotation, influx_variable

__all__ = ["dashboard"]


def dashboard() -> Dashboard:
    return (
        sdk.Dashboard("chargewatch: session drill-down")
        .uid(SESSION_UID)
        .description("One charging session: its curves, segments, flags and billing confidence.")
        .tags(TAGS)
        .time("now-24h", "now")
        .timezone("utc")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(sdk.TextBoxVariable("session_id").label("Session id"))
        .with_variable(influx_variable("station_id", "session.var.station_id", label="Station"))
        .annotation(
            influx_annotation(
                "Flags",
                "session.flags",
                text="reason",
                tags="kind",
                time_end="end_ms",
                color="red",
            )
        )
        .with_panel(
            query(timeseries.Panel(), "session.power")
            .title("Power against offered power")
            .description("Power drawn and the limit the charger offered, as measured.")
            .unit("watt")
            .span_nulls(True)
            .height(9)
            .span(16)
        )
        .with_panel(
            query(stat.Panel(), "session.billing_confidence")
            .title("Billing confidence")
            .description("1: the meter data hold no doubt; see below why it is lower.")
            .reduce_options(reduce("lastNotNull"))
            .unit("percentunit")
            .min(0)
            .max(1)
            .thresholds(
                sdk.ThresholdsConfig()
                .mode(ThresholdsMode.ABSOLUTE)
                .steps(
                    [
                        Threshold(value=None, color="red"),
                        Threshold(value=0.8, color="orange"),
                        Threshold(value=0.95, color="green"),
                    ]
                )
            )
            .height(9)
            .span(8)
        )
        .with_panel(
            query(stat.Panel(), "session.energy")
            .title("Energy")
            .description("By the meter's register, and by integrating the measured power.")
            .reduce_options(reduce("lastNotNull"))
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
            .unit("watth")
            .height(7)
            .span(8)
        )
        .with_panel(
            query(timeseries.Panel(), "session.soc")
            .title("State of charge")
            .unit("percent")
            .min(0)
            .max(100)
            .span_nulls(True)
            .height(7)
            .span(16)
        )
        .with_panel(
            query(bargauge.Panel(), "session.segments")
            .title("Segments")
            .description(
                "Time charging, suspended by the car, suspended by the charger, and idle after "
                "full (a connector blocked by a full car)."
            )
            .reduce_options(reduce("lastNotNull"))
            .unit("s")
            .orientation(common.VizOrientation.HORIZONTAL)
            .display_mode(common.BarGaugeDisplayMode.BASIC)
            .height(7)
            .span(8)
        )
        .with_panel(
            query(table.Panel(), "session.flags")
            .title("Flags")
            .description("Each detector finding on this session, with its evidence.")
            .with_transformation(
                transform(
                    "convertFieldType",
                    conversions=[{"targetField": "end_ms", "destinationType": "time"}],
                )
            )
            .height(7)
            .span(16)
        )
        .with_panel(
            query(table.Panel(), "session.billing_notes")
            .title("Why billing confidence is below 1")
            .no_value("no doubt about the meter data")
            .height(7)
            .span(8)
        )
        .with_panel(
            query(table.Panel(), "session.detail")
            .title("Session")
            .description("From the API's session catalogue.")
            .with_transformation(transform("reduce", mode="seriesToRows", reducers=["lastNotNull"]))
            .height(8)
            .span(16)
        )
        .with_panel(
            query(timeseries.Panel(), "session.profile")
            .title("Energy on the resampled grid")
            .description("The API's profile of the session: energy delivered so far.")
            .with_transformation(
                transform(
                    "organize",
                    excludeByName={"Power": True, "Offered power": True, "State of charge": True},
                    renameByName={},
                )
            )
            .unit("watth")
            .height(8)
            .span(24)
        )
        .build()
    )
