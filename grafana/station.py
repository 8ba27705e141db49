"""Station health: one station's connectors, faults, sessions, flags and alerts."""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import Dashboard, DashboardCursorSync

from .panels import SESSION_UID, STATION_UID, TAGS, link, query, reduce, session_link, transform
from .targets import influx_variable

__all__ = ["dashboard"]

# A session's time range from its row (start, and start + duration computed below).
_SESSION_RANGE = "from=${__value.time}&to=${__data.fields.end_ms}"


def dashboard() -> Dashboard:
    return (
        sdk.Dashboard("chargewatch: station health")
        .uid(STATION_UID)
        .description("One station: connector status, faults, sessions, flags and alerts.")
        .tags(TAGS)
        .time("now-24h", "now")
        .timezone("utc")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(influx_variable("station_id", "station.var.station_id", label="Station"))
        .with_panel(
            query(statetimeline.Panel(), "station.status")
            .title("Connector status")
            .description("OCPP status of each connector (connector 0: the station itself).")
            .height(7)
            .span(16)
        )
        .with_panel(
            query(stat.Panel(), "station.detail")
            .title("Charging success rate")
            .description(
                "From the API: share of sessions that delivered energy without a fault, stall or "
                "meter flag."
            )
            .reduce_options(reduce("lastNotNull", "/^Success rate$/"))
            .unit("percentunit")
            .height(7)
            .span(8)
        )
        .with_panel(
            query(stat.Panel(), "station.detail")
            .title("Sessions and faults")
            .reduce_options(
                reduce("lastNotNull", "/^(Finished sessions|Stalled|Meter flagged|Faults)$/")
            )
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
            .height(8)
            .span(8)
        )
        .with_panel(
            query(timeseries.Panel(), "station.power")
            .title("Power by connector")
            .description("Mean power per interval: each session shows as a block.")
            .unit("kwatt")
            .fill_opacity(15)
            .height(8)
            .span(16)
        )
        .with_panel(
            query(stat.Panel(), "station.sessions_started")
            .title("Sessions started")
            .reduce_options(reduce("lastNotNull"))
            .height(8)
            .span(8)
        )
        .with_panel(
            query(barchart.Panel(), "station.faults")
            .title("Faults by error code")
            .description("Status notifications with an error code, or Faulted, counted by code.")
            .with_transformation(
                transform(
                    "groupBy",
                    fields={
                        "error_code": {"aggregations": [], "operation": "groupby"},
                        "status": {"aggregations": ["count"], "operation": "aggregate"},
                    },
                )
            )
            .x_field("error_code")
            .height(8)
            .span(16)
        )
        .with_panel(
            query(table.Panel(), "station.faults").title("Fault notifications").height(8).span(24)
        )
        .with_panel(
            query(table.Panel(), "station.sessions")
            .title("Sessions")
            .description("Each session's profile: energy, duration, billing confidence.")
            .with_transformation(
                transform(
                    "calculateField",
                    mode="binary",
                    alias="end_ms",
                    binary={"left": "Time", "operator": "+", "right": "duration_ms"},
                )
            )
            .with_transformation(
                transform("organize", excludeByName={"duration_ms": True}, renameByName={})
            )
            .data_links(
                [
                    link(
                        "Open the session",
                        f"/d/{SESSION_UID}?var-session_id=${{__data.fields.session_id}}"
                        f"&var-station_id=${{station_id}}&{_SESSION_RANGE}",
                    )
                ]
            )
            .height(9)
            .span(12)
        )
        .with_panel(
            query(table.Panel(), "station.flagged_sessions")
            .title("Flagged sessions")
            .description("From the API's session list: sessions with at least one flag.")
            .data_links([session_link("Session")])
            .height(9)
            .span(12)
        )
        .with_panel(
            query(table.Panel(), "station.flags")
            .title("Flags")
            .data_links([session_link("session_id")])
            .height(8)
            .span(12)
        )
        .with_panel(
            query(table.Panel(), "station.alerts")
            .title("Alerts")
            .description("From the API: this station's alerts in the window, with their state.")
            .height(8)
            .span(12)
        )
        .build()
    )
