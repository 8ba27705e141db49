"""The project's InfluxDB v1 HTTP API client, line protocol, and a local development server."""

from chargewatch.influx.client import (
    MAX_RETRY_AFTER_S,
    InfluxClient,
    Series,
    quote_ident,
    quote_literal,
)
from chargewatch.influx.lineprotocol import (
    escape_field_key,
    escape_key,
    escape_measurement,
    format_field_value,
    format_point,
    quote_string,
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
