"""Network overview: what the whole network does now, and where it goes wrong."""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import Dashboard

from .panels import NETWORK_UID, STATION_UID, TAGS, link, query, reduce, transform

__all__ = ["dashboard"]


def dashboard() -> Dashboard:
    return (
        sdk.Dashboard("chargewatch: network overview")
        .uid(NETWORK_UID)
        .description("Sessions, power, energy and success across the network; where it fails.")
        .tags(TAGS)
        .time("now-24h", "now")
        .refresh("1m")
        .timezone("utc")
        .with_panel(
            query(stat.Panel(), "network.active_sessions")
            .title("Active sessions")
            .description("Sessions open in the latest quarter hour the detection job has judged.")
            .reduce_options(reduce("lastNotNull"))
            .graph_mode(common.BigValueGraphMode.AREA)
            .height(6)
            .span(8)
        )
        .with_panel(
            query(stat.Panel(), "network.energy_kwh")
            .title("Energy today")
            .description(
                "Energy the meters counted today (UTC), in sessions the detection job has judged."
            )
            .time_from("now/d")
            .unit("kwatth")
            .decimals(0)
            .reduce_options(reduce("lastNotNull"))
            .height(6)
            .span(8)
        )
        .with_panel(
            query(stat.Panel(), "network.kpis")
            .title("Charging success rate")
            .description(
                "Finished sessions that started in the window and delivered energy without a "
                "fault, stall or meter flag."
            )
            .reduce_options(reduce("lastNotNull", "/^Success rate$/"))
            .unit("percentunit")
            .min(0)
            .max(1)
            .height(6)
            .span(8)
        )
        .with_panel(
            query(timeseries.Panel(), "network.power_kw")
            .title("Power delivered")
            .description(
                "Mean power per quarter hour over the network (from the judged sessions' energy)."
            )
            .unit("kwatt")
            .fill_opacity(20)
            .height(8)
            .span(16)
        )
        .with_panel(
            query(barchart.Panel(), "network.open_alerts")
            .title("Open alerts by kind")
            .with_transformation(
                transform(
                    "groupBy",
                    fields={
                        "Alert": {"aggregations": [], "operation": "groupby"},
                        "Station": {"aggregations": ["count"], "operation": "aggregate"},
                    },
                )
            )
            .orientation(common.VizOrientation.HORIZONTAL)
            .height(8)
            .span(8)
        )
        .with_panel(
            query(table.Panel(), "network.stations")
            .title("Worst stations")
            .description("The ten stations with the lowest charging success rate in the window.")
            .with_transformation(
                transform("sortBy", sort=[{"field": "Success rate", "desc": False}])
            )
            .with_transformation(transform("limit", limitField=10))
            .data_links(
                [
                    link(
                        "Station health",
                        f"/d/{STATION_UID}?var-station_id=${{__data.fields.Station}}"
                        "&${__url_time_range}",
                    )
                ]
            )
            .height(9)
            .span(14)
        )
        .with_panel(
            query(barchart.Panel(), "network.flags_by_station")
            .title("Flags by station")
            .description("The ten stations with the most detector flags in the window.")
            .with_transformation(transform("sortBy", sort=[{"field": "flags", "desc": True}]))
            .with_transformation(transform("limit", limitField=10))
            .with_transformation(
                transform("organize", excludeByName={"Time": True}, renameByName={})
            )
            .x_field("station_id")
            .orientation(common.VizOrientation.HORIZONTAL)
            .height(9)
            .span(10)
        )
        .build()
    )
