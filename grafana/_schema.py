"""The part of Grafana's dashboard JSON schema that ``checks`` enforces, vendored as data.

From grafana-foundation-sdk's ``jsonschema/dashboard.jsonschema.json`` (Grafana 11): the keys each
object may hold (``additionalProperties: false``) and must hold, and the enums used.
"""

from __future__ import annotations

DASHBOARD_KEYS = frozenset(
    {
        "annotations",
        "description",
        "editable",
        "fiscalYearStartMonth",
        "gnetId",
        "graphTooltip",
        "id",
        "links",
        "liveNow",
        "panels",
        "preload",
        "refresh",
        "revision",
        "schemaVersion",
        "snapshot",
        "tags",
        "templating",
        "time",
        "timepicker",
        "timezone",
        "title",
        "uid",
        "version",
        "weekStart",
    }
)
DASHBOARD_REQUIRED = ("schemaVersion", "templating", "annotations")
PANEL_KEYS = frozenset(
    {
        "cacheTimeout",
        "datasource",
        "description",
        "fieldConfig",
        "gridPos",
        "hideTimeOverride",
        "id",
        "interval",
        "libraryPanel",
        "links",
        "maxDataPoints",
        "maxPerRow",
        "options",
        "pluginVersion",
        "queryCachingTTL",
        "repeat",
        "repeatDirection",
        "targets",
        "timeCompare",
        "timeFrom",
        "timeShift",
        "title",
        "transformations",
        "transparent",
        "type",
    }
)
FIELD_CONFIG_KEYS = frozenset(
    {
        "actions",
        "color",
        "custom",
        "decimals",
        "description",
        "displayName",
        "displayNameFromDS",
        "fieldMinMax",
        "filterable",
        "links",
        "mappings",
        "max",
        "min",
        "noValue",
        "path",
        "thresholds",
        "unit",
        "writeable",
    }
)
VARIABLE_KEYS = frozenset(
    {
        "allValue",
        "allowCustomValue",
        "auto",
        "auto_count",
        "auto_min",
        "current",
        "datasource",
        "definition",
        "description",
        "hide",
        "includeAll",
        "label",
        "multi",
        "name",
        "options",
        "query",
        "refresh",
        "regex",
        "skipUrlSync",
        "sort",
        "staticOptions",
        "staticOptionsOrder",
        "type",
    }
)
VARIABLE_TYPES = frozenset(
    {
        "query",
        "adhoc",
        "groupby",
        "constant",
        "datasource",
        "interval",
        "textbox",
        "custom",
        "system",
        "snapshot",
        "switch",
    }
)
ANNOTATION_KEYS = frozenset(
    {
        "builtIn",
        "datasource",
        "enable",
        "expr",
        "filter",
        "hide",
        "iconColor",
        "mappings",
        "name",
        "placement",
        "step",
        "tagKeys",
        "target",
        "textFormat",
        "titleFormat",
        "type",
        "useValueForTime",
    }
)
ANNOTATION_REQUIRED = ("name", "enable", "iconColor")
LINK_KEYS = frozenset(
    {
        "asDropdown",
        "icon",
        "includeVars",
        "keepTime",
        "placement",
        "tags",
        "targetBlank",
        "title",
        "tooltip",
        "type",
        "url",
    }
)
LINK_REQUIRED = (
    "title",
    "type",
    "icon",
    "tooltip",
    "tags",
    "asDropdown",
    "targetBlank",
    "includeVars",
    "keepTime",
)
TRANSFORMATION_KEYS = frozenset({"disabled", "filter", "id", "options", "topic"})
GRID_COLUMNS = 24
