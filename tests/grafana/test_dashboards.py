"""The generated provisioning tree: committed as generated, schema-valid, its queries lint-clean."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from grafana.build import COMMITTED, DASHBOARDS, dashboard_json, render
from grafana.checks import dashboard_problems, influxql_problems
from grafana.panels import SESSION_UID, STATION_UID
from grafana.queries import API_PREFIX, QUERIES, InfluxQuery, api_queries
from grafana.sources import API, ENVIRONMENT, INFINITY_PLUGIN, INFLUXDB

# The read routes of CONTRACTS.md section 6 that panels may call.
CONTRACT_ROUTES = {
    "/sessions",
    "/sessions/{session_id}",
    "/sessions/{session_id}/profile",
    "/flags",
    "/scores",
    "/stations",
    "/stations/{station_id}",
    "/usage",
    "/alerts",
    "/kpis",  # issue 10's network KPIs
}
GRAFANA_VARIABLE = re.compile(r"^\$\{(__from|__to):date:iso\}$|^\$\{(station_id|session_id)\}$")


def test_the_committed_tree_is_what_the_code_generates() -> None:
    files = render()
    for relative, text in files.items():
        committed = COMMITTED / relative
        assert committed.is_file(), (
            f"{relative} is missing: run chargewatch grafana build --out grafana"
        )
        assert committed.read_text(encoding="utf-8") == text, f"{relative} is stale: rebuild it"
    generated = {
        str(path.relative_to(COMMITTED))
        for folder in ("dashboards", "provisioning")
        for path in (COMMITTED / folder).rglob("*")
        if path.is_file()
    }
    assert generated == set(files), "files under grafana/ that the code no longer generates"


def test_the_command_writes_the_same_tree(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chargewatch", "grafana", "build", "--out", str(tmp_path / "g")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "CHARGEWATCH_DATA_DIR": str(tmp_path / "var")},
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 5 dashboards and 2 provisioning files" in done.stdout
    for relative, text in render().items():
        assert (tmp_path / "g" / relative).read_text(encoding="utf-8") == text


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_each_dashboard_keeps_to_the_schema_subset(name: str) -> None:
    assert dashboard_problems(dashboard_json(name)) == []


def test_every_query_is_used_and_every_panel_query_is_in_the_table() -> None:
    used: set[str] = set()
    for name in DASHBOARDS:
        board = dashboard_json(name)
        targets = [t for p in board["panels"] for t in p["targets"]]
        used |= {t["query"] for t in targets if t["datasource"]["uid"] == INFLUXDB.uid}
        used |= {t["url"] for t in targets if t["datasource"]["uid"] == API.uid}
        used |= {v["query"] for v in board["templating"].get("list", []) if v["type"] == "query"}
        used |= {a["target"]["query"] for a in board["annotations"].get("list", [])}
    table = {q.text if isinstance(q, InfluxQuery) else q.url for q in QUERIES.values()}
    assert table == used


def test_links_from_alerts_open_the_session_and_station_dashboards() -> None:
    # alerts/model.py links /d/chargewatch-session?var-session_id=... and the station's likewise
    boards = {dashboard_json(name)["uid"]: dashboard_json(name) for name in DASHBOARDS}
    for uid, variable in ((SESSION_UID, "session_id"), (STATION_UID, "station_id")):
        assert variable in {v["name"] for v in boards[uid]["templating"]["list"]}


@pytest.mark.parametrize("key", sorted(k for k, q in QUERIES.items() if isinstance(q, InfluxQuery)))
def test_each_influxql_query_follows_the_rules(key: str) -> None:
    query = QUERIES[key]
    assert isinstance(query, InfluxQuery)
    assert influxql_problems(query.text) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('SELECT mean("power_w") FROM "reading" WHERE time > now() - 1h', "not bounded"),
        ('SELECT "power_w" FROM "reading" WHERE $timeFilter AND time > now()', None),
        ('SELECT mean("power_w") FROM "reading" WHERE $timeFilter GROUP BY time(1m)', "fill(none)"),
        (
            'SELECT mean("power_w") FROM "reading" WHERE $timeFilter GROUP BY time(1m) fill(0)',
            "fill(none)",
        ),
        (
            'SELECT count("score") FROM "flag" WHERE $timeFilter GROUP BY "session_id"',
            "bounded tags",
        ),
        ('SELECT count("score") FROM "flag" WHERE $timeFilter GROUP BY *', "bounded tags"),
        ('SELECT count("score") FROM "flag" WHERE $timeFilter GROUP BY /.*/', "bounded tags"),
        ('SELECT * FROM "flag" WHERE $timeFilter', "SELECT *"),
        (
            'SELECT sum("p") FROM (SELECT mean("power_w") AS "p" FROM "reading" '
            "GROUP BY time(1m) fill(none)) WHERE $timeFilter GROUP BY time(1m) fill(none)",
            "not bounded",
        ),
        ('SELECT "score" FROM "flag" WHERE $timeFilter AND "kind" = \'$kind\'', "$kind"),
        ('SHOW TAG VALUES WITH KEY = "station_id"', "not bounded"),
        ('SELECT "score" FROM "flag" WHERE $timeFilter; DROP DATABASE "chargewatch"', "statement"),
    ],
)
def test_the_lint_catches_what_breaks_the_rules(text: str, problem: str | None) -> None:
    problems = influxql_problems(text)
    if problem is None:
        assert problems == [], problems
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("key", sorted(api_queries()))
def test_each_api_query_is_a_contract_route_with_well_formed_parameters(key: str) -> None:
    query = api_queries()[key]
    assert query.url.startswith(API_PREFIX + "/")
    route = re.sub(r"\$\{(\w+)\}", r"{\1}", query.path)
    assert route in CONTRACT_ROUTES
    for name, value in query.params:
        assert re.fullmatch(r"[a-z_]+", name), name
        assert re.fullmatch(r"[a-z0-9]+", value) or GRAFANA_VARIABLE.match(value), value
    assert len({name for name, _ in query.params}) == len(query.params)
    filled = re.sub(r"\$\{[^}]+\}", "X-1", query.url)
    url = httpx.URL("http://grafana.invalid" + filled, params=dict(query.params))
    assert url.path == filled and url.host == "grafana.invalid"
    selectors = [c.selector for c in query.columns]
    assert len(set(selectors)) == len(selectors)
    assert all(re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", s) for s in selectors), selectors


def test_the_provisioning_files_load_as_grafana_reads_them() -> None:
    files = render()
    sources: dict[str, Any] = yaml.safe_load(files["provisioning/datasources/datasources.yaml"])
    providers: dict[str, Any] = yaml.safe_load(files["provisioning/dashboards/dashboards.yaml"])
    assert sources["apiVersion"] == providers["apiVersion"] == 1
    by_uid = {source["uid"]: source for source in sources["datasources"]}
    influx, api = by_uid[INFLUXDB.uid], by_uid[API.uid]
    assert influx["type"] == "influxdb" and influx["jsonData"]["version"] == "InfluxQL"
    assert api["type"] == INFINITY_PLUGIN
    # the API key is a secure header, sent only to the API's own URL
    assert api["jsonData"]["httpHeaderName1"] == "X-API-Key"
    assert api["secureJsonData"] == {"httpHeaderValue1": "${CHARGEWATCH_GRAFANA_API_KEY}"}
    assert api["jsonData"]["allowedHosts"] == [api["url"]]
    assert influx["secureJsonData"] == {"password": "${CHARGEWATCH_INFLUX_PASSWORD}"}
    # nothing site-specific or secret written in: every value that varies is ${VARIABLE}
    text = files["provisioning/datasources/datasources.yaml"]
    text += files["provisioning/dashboards/dashboards.yaml"]
    assert set(re.findall(r"\$\{(\w+)\}", text)) == set(ENVIRONMENT)
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("${")
