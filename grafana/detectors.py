"""Detector quality: how often each detector flags, how its scores spread, what it pages."""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, bargauge, histogram, stat, table, timeseries
from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import Dashboard

from .panels import DETECTORS_UID, TAGS, query, reduce, session_link, transform

__all__ = ["dashboard"]


def dashboard() -> Dashboard:
    return (
        sdk.Dashboard("chargewatch: detector quality")
        .uid(DETECTORS_UID)
        .description("Flags by kind over time, score distributions, and the alerts they raise.")
        .tags(TAGS)
        .time("now-7d", "now")
        .timezone("utc")
        .with_panel(
            query(timeseries.Panel(), "detectors.flags_by_kind_time")
            .title("Flags by kind")
            .draw_style(common.GraphDrawStyle.BARS)
            .fill_opacity(70)
            .stacking(sdk_common.StackingConfig().mode(common.StackingMode.NORMAL))
            .height(9)
            .span(16)
        )
        .with_panel(
            query(stat.Panel(), "detectors.sessions")
            .title("Sessions judged")
            .description("Sessions profiled (and scored) that started in the window.")
            .reduce_options(reduce("sum"))
            .height(9)
            .span(8)
        )
        .with_panel(
            query(bargauge.Panel(), "detectors.flags_by_kind")
            .title("Flags in the window, by kind")
            .reduce_options(reduce("sum"))
            .orientation(common.VizOrientation.HORIZONTAL)
            .height(9)
            .span(8)
        )
        .with_panel(
            query(histogram.Panel(), "detectors.flag_scores")
            .title("Scores of flagged sessions, by kind")
            .description("Higher is more abnormal; a kind piled near its threshold is borderline.")
            .bucket_count(20)
            .min(0)
            .max(1)
            .height(9)
            .span(8)
        )
        .with_panel(
            query(histogram.Panel(), "detectors.scores")
            .title("Scores of every session, by kind")
            .description("From the API: every kind's score of every session, flagged or not.")
            .bucket_count(20)
            .min(0)
            .max(1)
            .height(9)
            .span(8)
        )
        .with_panel(
            query(stat.Panel(), "network.kpis")
            .title("Flagged share")
            .description("From the API: share of the window's sessions flagged with any kind.")
            .reduce_options(reduce("lastNotNull", "/^Flagged share$/"))
            .unit("percentunit")
            .height(4)
            .span(12)
        )
        .with_panel(
            query(stat.Panel(), "network.kpis")
            .title("Mean time to flag")
            .description(
                "From an anomaly's start to the scheduled job storing its flag (not backfills)."
            )
            .reduce_options(reduce("lastNotNull", "/^Mean time to flag$/"))
            .unit("s")
            .height(4)
            .span(12)
        )
        .with_panel(
            query(table.Panel(), "detectors.flags")
            .title("Flags")
            .description("From the API: each flag with its evidence; a row opens its session.")
            .data_links([session_link("Session", "${__data.fields.Station}")])
            .height(10)
            .span(16)
        )
        .with_panel(
            query(barchart.Panel(), "detectors.alerts")
            .title("Alerts by name")
            .description("From the API: the alerts raised in the window.")
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
            .height(10)
            .span(8)
        )
        .build()
    )
