"""Checks of the generated dashboards and of every query, as pure functions returning problems.

``dashboard_problems``: the constraints of Grafana's dashboard JSON schema (grafana-foundation-sdk
``jsonschema/dashboard.jsonschema.json``, Grafana 11) that these dashboards touch, vendored as
code (allowed and required keys, enums, grid bounds, link and transformation shapes), plus what
the schema cannot say: panel ids unique, panels not overlapping, every target reading a known
data source with a query of ``QUERIES``.

``influxql_problems``: DESIGN.md's rules for a query text (time bounded on both ends in every
``SELECT`` and ``SHOW``, ``fill(none)`` with ``GROUP BY time()``, only bounded tags grouped by,
explicit columns, only known template variables).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

from . import _schema
from .queries import QUERIES, ApiQuery, InfluxQuery
from .sources import API, INFLUXDB

__all__ = ["BOUNDED_TAGS", "VARIABLES", "dashboard_problems", "influxql_problems"]

# Tags with a bounded set of values (chargewatch/schema.py, chargewatch/flags.py).
BOUNDED_TAGS = frozenset({"station_id", "connector_id", "kind"})
# Template variables a query may use: Grafana's own and the dashboards'.
VARIABLES = frozenset(
    {"timeFilter", "__interval", "__interval_ms", "__from", "__to", "station_id", "session_id"}
)

# -- the schema subset -------------------------------------------------------------------------


def _keys(where: str, obj: Mapping[str, Any], allowed: frozenset[str]) -> Iterator[str]:
    for key in sorted(set(obj) - allowed):
        yield f"{where}: unknown key {key!r}"


def _required(
    where: str, obj: Mapping[str, Any], required: tuple[str, ...] | list[str]
) -> Iterator[str]:
    for key in required:
        if key not in obj:
            yield f"{where}: missing {key!r}"


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _grid(where: str, grid: Any) -> Iterator[str]:
    if not isinstance(grid, Mapping):
        yield f"{where}: gridPos missing"
        return
    yield from _required(where + ".gridPos", grid, ("h", "w", "x", "y"))
    values = [grid.get(k) for k in ("h", "w", "x", "y")]
    numbers = [v for v in values if _is_int(v)]
    if len(numbers) != len(values):
        yield f"{where}.gridPos: h, w, x, y must be integers"
        return
    h, w, x, y = numbers
    if h <= 0 or not 0 < w <= _schema.GRID_COLUMNS or not 0 <= x < _schema.GRID_COLUMNS or y < 0:
        yield f"{where}.gridPos: out of bounds ({grid})"
    elif x + w > _schema.GRID_COLUMNS:
        yield f"{where}.gridPos: wider than the grid ({grid})"


def _field_config(where: str, config: Any) -> Iterator[str]:
    if not isinstance(config, Mapping):
        return
    yield from _required(where + ".fieldConfig", config, ("defaults", "overrides"))
    defaults = config.get("defaults", {})
    yield from _keys(where + ".fieldConfig.defaults", defaults, _schema.FIELD_CONFIG_KEYS)
    for link in defaults.get("links", []):
        yield from _link(where + ".fieldConfig.defaults.links", link)
    for override in config.get("overrides", []):
        # The schema types both as objects (Grafana itself also takes strings): keep to it.
        options = override.get("matcher", {}).get("options")
        values = [p.get("value") for p in override.get("properties", [])]
        if any(v is not None and not isinstance(v, Mapping) for v in [options, *values]):
            yield f"{where}: an override's matcher options and values must be objects"


def _link(where: str, link: Any) -> Iterator[str]:
    yield from _keys(where, link, _schema.LINK_KEYS)
    yield from _required(where, link, _schema.LINK_REQUIRED)
    if link.get("type") not in ("link", "dashboards"):
        yield f"{where}: link type {link.get('type')!r}"


def _target(where: str, target: Any) -> Iterator[str]:
    source = target.get("datasource", {})
    if source.get("uid") == INFLUXDB.uid:
        known = {q.text for q in QUERIES.values() if isinstance(q, InfluxQuery)}
        if target.get("query") not in known or target.get("rawQuery") is not True:
            yield f"{where}: an InfluxQL target that is not a raw query of QUERIES"
    elif source.get("uid") == API.uid:
        known = {q.url for q in QUERIES.values() if isinstance(q, ApiQuery)}
        if target.get("url") not in known:
            yield f"{where}: an Infinity target whose URL is not in QUERIES"
    else:
        yield f"{where}: unknown data source {source!r}"


def _panel(where: str, panel: Mapping[str, Any]) -> Iterator[str]:
    yield from _keys(where, panel, _schema.PANEL_KEYS)
    if not isinstance(panel.get("type"), str) or not panel["type"]:
        yield f"{where}: type must be a non-empty string"
    if not _is_int(panel.get("id")):
        yield f"{where}: id must be an integer"
    yield from _grid(where, panel.get("gridPos"))
    yield from _field_config(where, panel.get("fieldConfig"))
    datasource = panel.get("datasource", {})
    yield from _keys(where + ".datasource", datasource, frozenset({"type", "uid"}))
    targets = panel.get("targets", [])
    ref_ids = [t.get("refId") for t in targets]
    if not targets or len(set(ref_ids)) != len(ref_ids):
        yield f"{where}: needs targets with distinct refIds"
    for i, target in enumerate(targets):
        if target.get("datasource") != datasource:
            yield f"{where}.targets[{i}]: another data source than the panel's"
        yield from _target(f"{where}.targets[{i}]", target)
    for i, transformation in enumerate(panel.get("transformations", [])):
        yield from _keys(
            f"{where}.transformations[{i}]", transformation, _schema.TRANSFORMATION_KEYS
        )
        if not isinstance(transformation.get("id"), str) or not isinstance(
            transformation.get("options"), Mapping
        ):
            yield f"{where}.transformations[{i}]: needs an id and options"


def _overlaps(panels: list[Mapping[str, Any]]) -> Iterator[str]:
    boxes = [(p.get("title"), p["gridPos"]) for p in panels if isinstance(p.get("gridPos"), dict)]
    for i, (title_a, a) in enumerate(boxes):
        for title_b, b in boxes[i + 1 :]:
            if (
                a["x"] < b["x"] + b["w"]
                and b["x"] < a["x"] + a["w"]
                and a["y"] < b["y"] + b["h"]
                and b["y"] < a["y"] + a["h"]
            ):
                yield f"panels {title_a!r} and {title_b!r} overlap"


def _variable(where: str, variable: Mapping[str, Any]) -> Iterator[str]:
    yield from _keys(where, variable, _schema.VARIABLE_KEYS)
    yield from _required(where, variable, ("type", "name"))
    if variable.get("type") not in _schema.VARIABLE_TYPES:
        yield f"{where}: type {variable.get('type')!r}"
    query = variable.get("query")
    if variable.get("type") == "query":
        known = {q.text for q in QUERIES.values() if isinstance(q, InfluxQuery)}
        if query not in known:
            yield f"{where}: a query that is not in QUERIES"
    elif query is not None and not isinstance(query, str | Mapping):
        yield f"{where}: query must be a string or an object"


def _annotation(where: str, annotation: Mapping[str, Any]) -> Iterator[str]:
    yield from _keys(where, annotation, _schema.ANNOTATION_KEYS)
    yield from _required(where, annotation, _schema.ANNOTATION_REQUIRED)
    target = annotation.get("target", {})
    if not isinstance(target, Mapping):
        yield f"{where}: target must be an object"
    elif annotation.get("datasource") == INFLUXDB.to_json():
        known = {q.text for q in QUERIES.values() if isinstance(q, InfluxQuery)}
        if target.get("query") not in known:
            yield f"{where}: a query that is not in QUERIES"


def dashboard_problems(dashboard: Mapping[str, Any]) -> list[str]:
    """What in ``dashboard`` (plain JSON data) breaks the schema subset or the rules above."""
    problems = [*_keys("dashboard", dashboard, _schema.DASHBOARD_KEYS)]
    problems += _required("dashboard", dashboard, _schema.DASHBOARD_REQUIRED)
    if not _is_int(dashboard.get("schemaVersion")):
        problems.append("dashboard: schemaVersion must be an integer")
    uid = dashboard.get("uid")
    if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
        problems.append(f"dashboard: uid {uid!r} (1-40 letters, digits, - or _)")
    time = dashboard.get("time", {})
    if set(time) != {"from", "to"}:
        problems.append("dashboard: time needs exactly from and to")
    panels = dashboard.get("panels", [])
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids):
        problems.append("dashboard: panel ids repeat")
    for i, panel in enumerate(panels):
        problems += _panel(f"panels[{i}] {panel.get('title')!r}", panel)
    problems += _overlaps(panels)
    for i, variable in enumerate(dashboard.get("templating", {}).get("list", [])):
        problems += _variable(f"templating.list[{i}]", variable)
    for i, annotation in enumerate(dashboard.get("annotations", {}).get("list", [])):
        problems += _annotation(f"annotations.list[{i}]", annotation)
    return problems


# -- InfluxQL ---------------------------------------------------------------------------------

_STATEMENT = re.compile(r"\b(SELECT|SHOW)\b", re.IGNORECASE)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_LOWER = re.compile(r"\btime\s*>=?\s*", re.IGNORECASE)
_UPPER = re.compile(r"\btime\s*<=?\s*", re.IGNORECASE)
_TIME_GROUP = re.compile(r"^time\s*\(\s*(\$__interval|\d+[a-z]+)\s*\)$", re.IGNORECASE)


def _split_subqueries(text: str) -> list[str]:
    """The statement and each subquery (``FROM (SELECT ...)``) as separate texts, each with
    its subqueries cut out."""
    statements, depth, current = [], 0, [""]
    stack: list[int] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "(" and re.match(r"\(\s*SELECT\b", text[i:], re.IGNORECASE):
            stack.append(depth)
            current.append("")
            depth += 1
            i += 1
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if stack and stack[-1] == depth:
                stack.pop()
                statements.append(current.pop())
                current[-1] += "(subquery)"
                i += 1
                continue
        current[-1] += char
        i += 1
    return [current[0], *statements]


_ENDS = ("GROUP\\s+BY", "ORDER\\s+BY", "LIMIT", "SLIMIT", "OFFSET", "SOFFSET", "TZ")


def _clause(statement: str, keyword: str) -> str | None:
    """The text of clause ``keyword`` (a regex) up to the next clause, or None."""
    match = re.search(rf"\b{keyword}\b", statement, re.IGNORECASE)
    if match is None:
        return None
    rest = statement[match.end() :]
    stop = len(rest)
    for end in _ENDS:
        found = re.search(rf"\b{end}\b", rest, re.IGNORECASE)
        if found is not None:
            stop = min(stop, found.start())
    return rest[:stop]


def _statement_problems(statement: str) -> Iterator[str]:
    head = statement.strip()
    if re.match(r"SELECT\s+\*", head, re.IGNORECASE):
        yield "SELECT * (name the columns a panel reads)"
    where = _clause(head, "WHERE") or ""
    bounded = "$timeFilter" in where or (_LOWER.search(where) and _UPPER.search(where))
    if not bounded:
        yield f"time not bounded on both ends: {head[:80]}"
    group = _clause(head, "GROUP\\s+BY")
    if group is None:
        if re.search(r"\bfill\s*\(", head, re.IGNORECASE):
            yield "fill() without GROUP BY"
        return
    items = [item.strip() for item in re.split(r",(?![^(]*\))", group) if item.strip()]
    grouped_by_time = False
    for item in items:
        for part in item.split():
            if part.lower().startswith("fill"):
                continue
            if _TIME_GROUP.match(part):
                grouped_by_time = True
            elif part.strip('"') not in BOUNDED_TAGS or not part.startswith('"'):
                yield f"GROUP BY {part}: only the bounded tags {sorted(BOUNDED_TAGS)}, quoted"
    fills = re.findall(r"fill\s*\(\s*([^)]*)\)", group, re.IGNORECASE)
    if grouped_by_time and fills != ["none"]:
        yield "GROUP BY time() needs exactly fill(none)"
    if fills and not grouped_by_time:
        yield "fill() without GROUP BY time()"


def influxql_problems(text: str) -> list[str]:
    """What in an InfluxQL query text breaks the rules of the module docstring."""
    problems = []
    for name, bare in _VARIABLE.findall(text):
        variable = name or bare
        if variable not in VARIABLES and not variable.startswith("tag_"):
            problems.append(f"unknown template variable ${variable}")
    statements = _split_subqueries(text)
    if ";" in text or len(_STATEMENT.findall(text)) != len(statements):
        problems.append("one statement per query (subqueries in FROM (...) only)")
    for statement in statements:
        problems += _statement_problems(statement)
    return problems
