"""Usage patterns: when the network is busy, how long cars stay, what they take.

Occupancy by hour of week needs the calendar (a weekday and an hour across weeks), which InfluxQL
cannot group by; the API computes it (``/usage``) and the panel turns its rows into a weekday x
hour matrix coloured by value: a heatmap.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, histogram, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    FieldColorModeId,
)

from .panels import TAGS, USAGE_UID, query, reduce, transform

__all__ = ["dashboard"]


def dashboard() -> Dashboard:
    return (
        sdk.Dashboard("chargewatch: usage patterns")
        .uid(USAGE_UID)
        .description("Occupancy by hour of week, energy by hour, idle time after full, durations.")
        .tags(TAGS)
        .time("now-7d", "now")
        .timezone("utc")
        .with_panel(
            query(table.Panel(), "usage.occupancy")
            .title("Occupancy by hour of week")
            .description(
                "Share of connectors occupied, by weekday (rows) and hour of day (columns, UTC)."
            )
            .with_transformation(
                transform(
                    "groupingToMatrix",
                    columnField="Hour",
                    rowField="Day",
                    valueField="Occupancy",
                    emptyValue="null",
                )
            )
            .cell_options(
                common.TableColoredBackgroundCellOptions(
                    mode=common.TableCellBackgroundDisplayMode.GRADIENT
                )
            )
            .color_scheme(sdk.FieldColor().mode(FieldColorModeId.CONTINUOUS_GR_YL_RD))
            .unit("percentunit")
            .decimals(0)
            .min(0)
            .max(1)
            .height(9)
            .span(24)
        )
        .with_panel(
            query(timeseries.Panel(), "usage.energy_by_hour")
            .title("Energy by hour")
            .description("Energy the meters counted in each hour, over the network.")
            .unit("kwatth")
            .draw_style(common.GraphDrawStyle.BARS)
            .fill_opacity(60)
            .height(8)
            .span(16)
        )
        .with_panel(
            query(stat.Panel(), "usage.summary")
            .title("Peak concurrent sessions")
            .reduce_options(reduce("lastNotNull", "/^Peak concurrent sessions$/"))
            .height(8)
            .span(8)
        )
        .with_panel(
            query(stat.Panel(), "usage.summary")
            .title("Returning users")
            .description("Share of users in the window who had charged before in it.")
            .reduce_options(reduce("lastNotNull", "/^Returning users$/"))
            .unit("percentunit")
            .height(4)
            .span(12)
        )
        .with_panel(
            query(stat.Panel(), "usage.summary")
            .title("Idle after full")
            .description("Minutes connectors stayed blocked by full cars in the window.")
            .reduce_options(reduce("lastNotNull", "/^Idle after full$/"))
            .unit("m")
            .height(4)
            .span(12)
        )
        .with_panel(
            query(timeseries.Panel(), "usage.idle_after_full")
            .title("Idle after full")
            .description(
                "Minutes connectors stayed blocked by full cars (plugged in, done charging)."
            )
            .unit("m")
            .draw_style(common.GraphDrawStyle.BARS)
            .fill_opacity(60)
            .height(8)
            .span(12)
        )
        .with_panel(
            query(barchart.Panel(), "usage.idle_by_station")
            .title("Idle after full by station")
            .with_transformation(transform("sortBy", sort=[{"field": "idle_min", "desc": True}]))
            .with_transformation(transform("limit", limitField=10))
            .with_transformation(
                transform("organize", excludeByName={"Time": True}, renameByName={})
            )
            .x_field("station_id")
            .orientation(common.VizOrientation.HORIZONTAL)
            .unit("m")
            .height(8)
            .span(12)
        )
        .with_panel(
            query(histogram.Panel(), "usage.durations")
            .title("Session duration")
            .unit("m")
            .bucket_size(15)
            .height(8)
            .span(12)
        )
        .with_panel(
            query(histogram.Panel(), "usage.energies")
            .title("Energy per session")
            .unit("kwatth")
            .bucket_size(5)
            .height(8)
            .span(12)
        )
        .with_panel(
            query(timeseries.Panel(), "usage.connectors_in_use")
            .title("Connectors in use")
            .description("Mean number of connectors occupied by a session, and charging, per hour.")
            .fill_opacity(15)
            .height(8)
            .span(24)
        )
        .build()
    )
