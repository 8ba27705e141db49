"""Panel targets, variables and annotations made from ``QUERIES`` entries.

grafana-foundation-sdk has builders for dashboards and panels but no query types for InfluxDB or
for the Infinity plugin; its ``Dataquery`` is open to other data sources, so the two query
models are written here as ``Dataquery`` variants (InfluxQL in raw mode, and Infinity's JSON
query with its backend parser, which applies ``root_selector`` and ``columns`` in Grafana's
server so that transformations and alerting see typed fields).
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.cog import builder, variants
from grafana_foundation_sdk.models.dashboard import (
    AnnotationQuery,
    AnnotationTarget,
    DataSourceRef,
    VariableHide,
    VariableRefresh,
    VariableSort,
)

from .queries import QUERIES, ApiQuery, InfluxQuery
from .sources import API, INFLUXDB

__all__ = [
    "api_target",
    "influx_annotation",
    "influx_target",
    "influx_variable",
    "target",
]


class _InfluxQL(variants.Dataquery):
    def __init__(self, ref_id: str, query: InfluxQuery) -> None:
        self.ref_id, self.query = ref_id, query

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": INFLUXDB.to_json(),
            "query": self.query.text,
            "rawQuery": True,
            "resultFormat": self.query.result_format,
        }
        if self.query.alias is not None:
            out["alias"] = self.query.alias
        return out


class _Infinity(variants.Dataquery):
    def __init__(self, ref_id: str, query: ApiQuery) -> None:
        self.ref_id, self.query = ref_id, query

    def to_json(self) -> dict[str, object]:
        q = self.query
        return {
            "refId": self.ref_id,
            "datasource": API.to_json(),
            "type": "json",
            "source": "url",
            "parser": "backend",
            "format": q.format,
            "url": q.url,
            "url_options": {
                "method": "GET",
                "params": [{"key": key, "value": value} for key, value in q.params],
                "headers": [],
                "data": "",
            },
            "root_selector": q.root,
            "json_options": {"root_is_not_array": q.single, "columnar": False},
            "columns": [
                {"selector": c.selector, "text": c.text, "type": c.type} for c in q.columns
            ],
            "computed_columns": [],
            "filters": [],
        }


class _Target(builder.Builder[variants.Dataquery]):
    def __init__(self, query: variants.Dataquery) -> None:
        self._query = query

    def build(self) -> variants.Dataquery:
        return self._query


def influx_target(key: str, ref_id: str = "A") -> _Target:
    query = QUERIES[key]
    if not isinstance(query, InfluxQuery):
        raise TypeError(f"{key} is not an InfluxQL query")
    return _Target(_InfluxQL(ref_id, query))


def api_target(key: str, ref_id: str = "A") -> _Target:
    query = QUERIES[key]
    if not isinstance(query, ApiQuery):
        raise TypeError(f"{key} is not an API query")
    return _Target(_Infinity(ref_id, query))


def target(key: str, ref_id: str = "A") -> _Target:
    """The target of ``QUERIES[key]``, whichever data source it reads."""
    if isinstance(QUERIES[key], InfluxQuery):
        return influx_target(key, ref_id)
    return api_target(key, ref_id)


def datasource_of(key: str) -> DataSourceRef:
    return INFLUXDB if isinstance(QUERIES[key], InfluxQuery) else API


def influx_variable(
    name: str, key: str, *, label: str, hide: VariableHide = VariableHide.DONT_HIDE
) -> sdk.QueryVariable:
    """A query variable read from InfluxDB, refreshed when the time range changes."""
    query = QUERIES[key]
    if not isinstance(query, InfluxQuery):
        raise TypeError(f"{key} is not an InfluxQL query")
    return (
        sdk.QueryVariable(name)
        .label(label)
        .datasource(INFLUXDB)
        .query(query.text)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .hide(hide)
    )


class _InfluxAnnotationTarget(AnnotationTarget):
    """The target of an InfluxQL annotation, as Grafana's InfluxDB data source stores it:
    the query and which columns carry the text, the tags and the end of each event."""

    def __init__(self, query: InfluxQuery, *, text: str, tags: str, time_end: str) -> None:
        super().__init__()
        self.query, self.columns = query, (text, tags, time_end)

    def to_json(self) -> dict[str, Any]:
        text, tags, time_end = self.columns
        return {
            "refId": "Anno",
            "query": self.query.text,
            "rawQuery": True,
            "fromAnnotations": True,
            "textColumn": text,
            "tagsColumn": tags,
            "timeEndColumn": time_end,
        }


class _Annotation(builder.Builder[AnnotationQuery]):
    def __init__(self, annotation: AnnotationQuery) -> None:
        self._annotation = annotation

    def build(self) -> AnnotationQuery:
        return self._annotation


def influx_annotation(
    name: str, key: str, *, text: str, tags: str, time_end: str, color: str
) -> _Annotation:
    """Events from an InfluxQL query, drawn on every time series panel of the dashboard."""
    query = QUERIES[key]
    if not isinstance(query, InfluxQuery):
        raise TypeError(f"{key} is not an InfluxQL query")
    missing = {text, tags, time_end} - set(query.columns)
    if missing:
        raise ValueError(f"{key} has no column {', '.join(sorted(missing))}")
    return _Annotation(
        AnnotationQuery(
            name=name,
            datasource=INFLUXDB,
            enable=True,
            hide=False,
            icon_color=color,
            target=_InfluxAnnotationTarget(query, text=text, tags=tags, time_end=time_end),
            built_in=0,
        )
    )
