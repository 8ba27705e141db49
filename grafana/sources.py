"""The two data sources and the dashboard provider, as Grafana 11 provisioning files.

Nothing secret or site-specific is written into them: Grafana expands ``${VAR}`` from its own
environment when it loads a provisioning file, so the same files serve every installation.

- InfluxDB (InfluxQL): ``CHARGEWATCH_INFLUX_URL``, ``CHARGEWATCH_INFLUX_DATABASE``,
  ``CHARGEWATCH_INFLUX_USERNAME``, ``CHARGEWATCH_INFLUX_PASSWORD`` (the service's own names, so
  one environment file can serve both; give Grafana a user with read rights only).
- The chargewatch API through the Infinity plugin (``yesoreyeram-infinity-datasource``):
  ``CHARGEWATCH_API_URL`` (as Grafana reaches the service, without a trailing slash) and
  ``CHARGEWATCH_GRAFANA_API_KEY`` (a viewer key, ``chargewatch keys create --role viewer``),
  sent as the secure ``X-API-Key`` header and only to that URL.
- The dashboards: ``CHARGEWATCH_GRAFANA_DASHBOARDS``, the folder holding the generated JSON.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models.dashboard import DataSourceRef

__all__ = [
    "API",
    "DASHBOARD_FOLDER",
    "ENVIRONMENT",
    "INFINITY_PLUGIN",
    "INFLUXDB",
    "dashboard_providers",
    "datasources",
]

INFINITY_PLUGIN = "yesoreyeram-infinity-datasource"
INFLUXDB = DataSourceRef(type_val="influxdb", uid="chargewatch-influxdb")
API = DataSourceRef(type_val=INFINITY_PLUGIN, uid="chargewatch-api")
DASHBOARD_FOLDER = "chargewatch"

# What each environment variable the provisioning files read is for (README, Grafana).
ENVIRONMENT: dict[str, str] = {
    "CHARGEWATCH_INFLUX_URL": "InfluxDB's URL as Grafana reaches it",
    "CHARGEWATCH_INFLUX_DATABASE": "the database chargewatch writes",
    "CHARGEWATCH_INFLUX_USERNAME": "an InfluxDB user with read rights (empty without auth)",
    "CHARGEWATCH_INFLUX_PASSWORD": "its password (stored encrypted by Grafana)",
    "CHARGEWATCH_API_URL": "the chargewatch service as Grafana reaches it, no trailing slash",
    "CHARGEWATCH_GRAFANA_API_KEY": "a viewer API key, sent as the secure X-API-Key header",
    "CHARGEWATCH_GRAFANA_DASHBOARDS": "the folder holding the generated dashboard JSON",
}


def _env(name: str) -> str:
    if name not in ENVIRONMENT:
        raise KeyError(f"{name} is not documented in ENVIRONMENT")
    return "${" + name + "}"


def datasources() -> dict[str, Any]:
    """``provisioning/datasources/datasources.yaml``."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "chargewatch InfluxDB",
                "uid": INFLUXDB.uid,
                "type": INFLUXDB.type_val,
                "access": "proxy",
                "url": _env("CHARGEWATCH_INFLUX_URL"),
                "user": _env("CHARGEWATCH_INFLUX_USERNAME"),
                "jsonData": {
                    "version": "InfluxQL",
                    "dbName": _env("CHARGEWATCH_INFLUX_DATABASE"),
                    "httpMode": "POST",  # panel queries can be long; 1.x answers POST /query
                    "timeInterval": "10s",  # no finer than the chargers' sampling
                },
                "secureJsonData": {"password": _env("CHARGEWATCH_INFLUX_PASSWORD")},
                "editable": False,
            },
            {
                "name": "chargewatch API",
                "uid": API.uid,
                "type": API.type_val,
                "access": "proxy",
                # Infinity prefixes each query's relative URL (/api/v1/...) with this one.
                "url": _env("CHARGEWATCH_API_URL"),
                "jsonData": {
                    "allowedHosts": [_env("CHARGEWATCH_API_URL")],  # the key goes nowhere else
                    "httpHeaderName1": "X-API-Key",
                    "timeoutInSeconds": 30,
                },
                "secureJsonData": {"httpHeaderValue1": _env("CHARGEWATCH_GRAFANA_API_KEY")},
                "editable": False,
            },
        ],
    }


def dashboard_providers() -> dict[str, Any]:
    """``provisioning/dashboards/dashboards.yaml``: a file provider for the generated JSON."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "chargewatch",
                "orgId": 1,
                "type": "file",
                "folder": DASHBOARD_FOLDER,
                "folderUid": DASHBOARD_FOLDER,
                "disableDeletion": True,
                "allowUiUpdates": False,  # the code is the source: regenerate, do not edit
                "updateIntervalSeconds": 60,
                "options": {
                    "path": _env("CHARGEWATCH_GRAFANA_DASHBOARDS"),
                    "foldersFromFilesStructure": False,
                },
            }
        ],
    }
