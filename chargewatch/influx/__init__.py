"""The project's InfluxDB v1 HTTP API client, line protocol, and a local development server.

The line protocol is imported with the package; the client, the server and the batch writer
(which bring httpx, a tenth of a second of start-up) when first named, so that a command that
never talks to InfluxDB (``detect --input``) does not load them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from chargewatch.influx.lineprotocol import (
    escape_field_key,
    escape_key,
    escape_measurement,
    format_field_value,
    format_point,
    quote_string,
)

if TYPE_CHECKING:
    from chargewatch.influx.client import (
        MAX_RETRY_AFTER_S,
        InfluxClient,
        Series,
        quote_ident,
        quote_literal,
    )
    from chargewatch.influx.server import LocalInfluxd, find_or_install_influxd
    from chargewatch.influx.writer import BatchWriter

__all__ = [
    "MAX_RETRY_AFTER_S",
    "BatchWriter",
    "InfluxClient",
    "LocalInfluxd",
    "Series",
    "escape_field_key",
    "escape_key",
    "escape_measurement",
    "find_or_install_influxd",
    "format_field_value",
    "format_point",
    "quote_ident",
    "quote_literal",
    "quote_string",
]

# the module of each name imported when first asked for
_LAZY = {
    "MAX_RETRY_AFTER_S": "client",
    "InfluxClient": "client",
    "Series": "client",
    "quote_ident": "client",
    "quote_literal": "client",
    "LocalInfluxd": "server",
    "find_or_install_influxd": "server",
    "BatchWriter": "writer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # looked up once
    return value
