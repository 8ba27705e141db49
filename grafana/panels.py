"""What the dashboards share: their uids, a panel's query, transformations and links."""

from __future__ import annotations

from typing import Any, Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.cog import builder, variants
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
)

from .targets import datasource_of, target

__all__ = [
    "DETECTORS_UID",
    "NETWORK_UID",
    "SESSION_UID",
    "STATION_UID",
    "USAGE_UID",
    "link",
    "query",
    "reduce",
    "session_link",
    "transform",
]

# alerts/ links alerts to the session and station dashboards by these uids and variables
# (``var-session_id``, ``var-station_id``): keep them.
NETWORK_UID = "chargewatch-network"
SESSION_UID = "chargewatch-session"
STATION_UID = "chargewatch-station"
USAGE_UID = "chargewatch-usage"
DETECTORS_UID = "chargewatch-detectors"
TAGS = ["chargewatch"]


class _Queryable(Protocol):
    def datasource(self, datasource: DataSourceRef) -> Self: ...

    def with_target(self, target: builder.Builder[variants.Dataquery]) -> Self: ...


P = TypeVar("P", bound=_Queryable)


def query(panel: P, *keys: str) -> P:
    """``panel`` reading ``QUERIES[key]`` for each key (refIds A, B, ...; one data source)."""
    sources = {datasource_of(key).uid for key in keys}
    if len(sources) != 1:
        raise ValueError(f"one data source per panel: {', '.join(keys)}")
    panel = panel.datasource(datasource_of(keys[0]))
    for i, key in enumerate(keys):
        panel = panel.with_target(target(key, chr(ord("A") + i)))
    return panel


def transform(transformer: str, **options: Any) -> DataTransformerConfig:
    return DataTransformerConfig(id_val=transformer, options=options)


def reduce(calculation: str, fields: str | None = None) -> sdk_common.ReduceDataOptions:
    """One value per field (``lastNotNull``, ``max``, ``sum``...); ``fields``: a regex of the
    fields to show (a fresh builder each time: builders are mutable)."""
    options = sdk_common.ReduceDataOptions().calcs([calculation])
    return options if fields is None else options.fields(fields)


def link(title: str, url: str) -> sdk.DashboardLink:
    """A data link (opens in the same tab, keeps nothing implicit: the URL says it all)."""
    return sdk.DashboardLink(title).type(DashboardLinkType.LINK).url(url).tooltip(title)


def session_link(session_field: str, station: str = "${station_id}") -> sdk.DashboardLink:
    """To the session drill-down for the session in ``session_field`` of the clicked row,
    keeping the time range."""
    return link(
        "Open the session",
        f"/d/{SESSION_UID}?var-session_id=${{__data.fields.{session_field}}}"
        f"&var-station_id={station}&${{__url_time_range}}",
    )
