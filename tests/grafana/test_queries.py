"""Every panel's query, run as Grafana would run it, against a judged simulated fleet.

InfluxQL goes to the real InfluxDB (``POST /query``, ``epoch=ms``, as Grafana's data source sends
it) with the template variables filled in the way Grafana fills them; the API's queries go to a
served app with a viewer key, as the Infinity data source sends them. Each answer must have the
shape its panel reads, and rows where the fleet guarantees some.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from chargewatch.influx import LocalInfluxd
from chargewatch.roles import Role
from grafana.queries import API_PREFIX, ApiQuery, Column, api_queries, influx_queries
from service.serve import Service, build_app
from tests.api.server import served
from tests.conftest import JudgedFleet

_VARIABLE = re.compile(r"\$\{(\w+)(?::([^}]*))?\}|\$(\w+)")


def grafana_fill(text: str, fleet: JudgedFleet) -> str:
    """``text`` with its template variables replaced as Grafana 11 replaces them for a
    dashboard showing the fleet's window (``$__interval`` as for a 1 m step)."""
    since_ms, until_ms = fleet.since_ns // 1_000_000, fleet.until_ns // 1_000_000
    plain = {
        "timeFilter": f"time >= {since_ms}ms and time <= {until_ms}ms",
        "__interval": "1m",
        "__interval_ms": "60000",
        "__from": str(since_ms),
        "__to": str(until_ms),
        "station_id": fleet.station_id,
        "session_id": fleet.session_id,
    }
    iso = {
        "__from": datetime.fromtimestamp(since_ms / 1000, UTC).isoformat(timespec="milliseconds"),
        "__to": datetime.fromtimestamp(until_ms / 1000, UTC).isoformat(timespec="milliseconds"),
    }

    def value(match: re.Match[str]) -> str:
        braced, fmt, bare = match.groups()
        name = braced or bare
        if fmt == "date:iso":
            return iso[name].replace("+00:00", "Z")
        assert fmt is None, f"format {fmt} not filled here"
        return plain[name]  # KeyError: a variable no dashboard defines

    return _VARIABLE.sub(value, text)


# -- InfluxQL ----------------------------------------------------------------------------------


def influxql(influxd: LocalInfluxd, database: str, text: str) -> dict[str, Any]:
    reply = httpx.post(
        influxd.url + "/query",
        params={"db": database, "epoch": "ms"},
        data={"q": text},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    (result,) = reply.json()["results"]
    assert "error" not in result, f"{result['error']}: {text}"
    found: dict[str, Any] = result
    return found


@pytest.mark.parametrize("key", sorted(influx_queries()))
def test_each_influxql_query_returns_what_its_panel_reads(
    key: str, influxd: LocalInfluxd, judged_fleet: JudgedFleet
) -> None:
    query = influx_queries()[key]
    text = grafana_fill(query.text, judged_fleet)
    assert "$" not in text
    series = influxql(influxd, judged_fleet.settings.influx_database, text).get("series", [])
    if query.guaranteed:
        assert any(s["values"] for s in series), f"{key}: no rows"
    for s in series:
        assert tuple(s["columns"]) == query.columns, key
        assert set(s.get("tags", {})) == set(query.tags), key
        times = [row[0] for row in s["values"]]
        if s["columns"][0] == "time":
            assert all(isinstance(t, int) for t in times)


def test_the_variables_resolve_to_the_fleet(
    influxd: LocalInfluxd, judged_fleet: JudgedFleet
) -> None:
    database = judged_fleet.settings.influx_database

    def values(key: str, column: int) -> set[str]:
        text = grafana_fill(influx_queries()[key].text, judged_fleet)
        return {
            row[column] for s in influxql(influxd, database, text)["series"] for row in s["values"]
        }

    # the session dashboard finds the session's station (Grafana reads the first column)
    assert values("session.var.station_id", 1) == {judged_fleet.station_id}
    stations = values("station.var.station_id", 1)
    assert judged_fleet.station_id in stations and len(stations) == 10


def test_the_fault_and_the_flags_reach_their_panels(
    influxd: LocalInfluxd, judged_fleet: JudgedFleet
) -> None:
    database = judged_fleet.settings.influx_database

    def rows(key: str) -> list[dict[str, Any]]:
        text = grafana_fill(influx_queries()[key].text, judged_fleet)
        return [
            dict(zip(s["columns"], row, strict=True))
            for s in influxql(influxd, database, text).get("series", [])
            for row in s["values"]
        ]

    (fault,) = rows("station.faults")
    assert (fault["error_code"], fault["status"]) == ("GroundFailure", "Faulted")
    flags = rows("session.flags")
    assert flags  # the fleet's session is a flagged one (tests/conftest.py, judged_fleet)
    assert all(f["end_ms"] >= f["time"] for f in flags)  # the annotation's region is forward
    (segments,) = rows("session.segments")
    assert segments["charging_s"] > 0


# -- the API through Infinity -----------------------------------------------------------------


class Api:
    def __init__(self, client: httpx.Client, routes: set[str]) -> None:
        self.client, self.routes = client, routes


@pytest.fixture(scope="module")
def api(judged_fleet: JudgedFleet) -> Iterator[Api]:
    """``serve``'s app over the judged fleet, and a viewer key (Grafana's)."""
    service = Service(judged_fleet.settings)
    service.start()
    try:
        key = service.state.create_api_key(Role.VIEWER)
        app = build_app(service)
        routes = set(app.openapi()["paths"])  # what the app serves, however it is composed
        with (
            served(app) as url,
            httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client,
        ):
            yield Api(client, routes)
    finally:
        service.stop()


def _select(document: Any, path: str) -> Any:
    for part in path.split(".") if path else []:
        assert isinstance(document, dict) and part in document, f"no {path!r} in the answer"
        document = document[part]
    return document


def _typed(value: Any, column: Column) -> bool:
    if value is None:
        return True
    if column.type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if column.type == "boolean":
        return isinstance(value, bool)
    if column.type == "timestamp":
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    return isinstance(value, str)


@pytest.mark.parametrize("key", sorted(api_queries()))
def test_each_api_query_returns_what_its_panel_reads(
    key: str, api: Api, judged_fleet: JudgedFleet
) -> None:
    query: ApiQuery = api_queries()[key]
    route = API_PREFIX + re.sub(r"\$\{(\w+)\}", r"{\1}", query.path)
    if route not in api.routes:
        pytest.skip("route not built yet")
    reply = api.client.get(
        grafana_fill(query.url, judged_fleet),
        params=[(name, grafana_fill(value, judged_fleet)) for name, value in query.params],
    )
    assert reply.status_code == 200, reply.text
    rows = _select(reply.json(), query.root)
    if query.single:
        assert isinstance(rows, dict)
        rows = [rows]
    assert isinstance(rows, list)
    if query.guaranteed:
        assert rows, f"{key}: no rows"
    for row in rows:
        for column in query.columns:
            value = _select(row, column.selector)
            assert _typed(value, column), f"{column.selector}={value!r} is not a {column.type}"
