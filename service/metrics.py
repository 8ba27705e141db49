"""The service's Prometheus metrics, in a registry of their own (nothing global): events accepted
and rejected, the spool's depth and quarantine, InfluxDB writes, and the OCPP gateway's own
counters."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from alerts.job import AlertJobStatus
from analytics.learned import ModelStatus
from ingest.ocppj import OcppGateway
from ingest.spool import Spool


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (nothing global)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "chargewatch_events_accepted",
            "Events accepted and spooled",
            ["source", "type"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "chargewatch_events_rejected",
            "Events rejected, by the field at fault",
            ["source", "field"],
            registry=self.registry,
        )
        self.spool_events = Gauge(
            "chargewatch_spool_depth_events", "Lines waiting for InfluxDB", registry=self.registry
        )
        self.spool_bytes = Gauge(
            "chargewatch_spool_depth_bytes", "Bytes waiting for InfluxDB", registry=self.registry
        )
        self.influx_write_seconds = Histogram(
            "chargewatch_influx_write_seconds",
            "Time of one batch write to InfluxDB",
            registry=self.registry,
        )
        self.influx_write_errors = Counter(
            "chargewatch_influx_write_errors", "Failed batch writes", registry=self.registry
        )
        self.connected_stations = Gauge(
            "chargewatch_ocpp_connected_stations", "Stations connected", registry=self.registry
        )
        self.open_connections = Gauge(
            "chargewatch_open_connections",
            "HTTP and WebSocket connections open",
            registry=self.registry,
        )
        self.connections_closed = Counter(
            "chargewatch_connections_closed",
            "Connections closed at the server's limits (connection_limit, address_limit, "
            "header_timeout)",
            ["reason"],
            registry=self.registry,
        )
        self.detect_partitions = Gauge(
            "chargewatch_detect_partitions_held",
            "Station partitions this instance's detection job holds (leased)",
            registry=self.registry,
        )

    def watch_ocpp(self, gateway: OcppGateway) -> None:
        """Export the gateway's own counters (calls by action, CallErrors by reason)."""
        self.registry.register(_OcppCollector(gateway))

    def watch_spool(self, spool: Spool) -> None:
        """Export the spool's quarantine: damaged records set aside (and their bytes) since
        start, and the files waiting in the quarantine directory for an operator."""
        self.registry.register(_SpoolCollector(spool))

    def watch_alerts(self, status: AlertJobStatus) -> None:
        """Export the alert job's figures: alerts active by severity, sends and failed sends
        per Alertmanager URL (without credentials)."""
        self.registry.register(_AlertCollector(status))

    def watch_model(self, status: ModelStatus) -> None:
        """Export which model version scores (``chargewatch_model_info{version}``, 1; the
        version "built-in" when none is promoted) and how many loads were refused."""
        self.registry.register(_ModelCollector(status))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _OcppCollector(Collector):
    def __init__(self, gateway: OcppGateway) -> None:
        self._gateway = gateway

    def collect(self) -> Iterator[CounterMetricFamily]:
        calls = CounterMetricFamily(
            "chargewatch_ocpp_calls", "OCPP calls received, by action", labels=["action"]
        )
        for action, count in sorted(self._gateway.messages.items()):
            calls.add_metric([action], count)
        errors = CounterMetricFamily(
            "chargewatch_ocpp_call_errors", "OCPP CallErrors sent, by reason", labels=["reason"]
        )
        for reason, count in sorted(self._gateway.rejected.items()):
            errors.add_metric([reason], count)
        refused = CounterMetricFamily(
            "chargewatch_ocpp_connections_refused",
            "OCPP connections refused before the upgrade, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(self._gateway.refused.items()):
            refused.add_metric([reason], count)
        replaced = CounterMetricFamily(
            "chargewatch_ocpp_connections_replaced",
            "OCPP connections closed because their station connected again",
            value=self._gateway.replaced,
        )
        disconnects = CounterMetricFamily(
            "chargewatch_ocpp_disconnects",
            "OCPP station connections ended, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(self._gateway.disconnects.items()):
            disconnects.add_metric([reason], count)
        lost = CounterMetricFamily(
            "chargewatch_ocpp_station_events_lost",
            "Station liveness events the spool refused when no later message could carry them",
            value=self._gateway.stats.station_events_lost,
        )
        yield calls
        yield errors
        yield refused
        yield replaced
        yield disconnects
        yield lost


class _AlertCollector(Collector):
    def __init__(self, status: AlertJobStatus) -> None:
        self._status = status

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        active = GaugeMetricFamily(
            "chargewatch_alerts_active", "Alerts active, by severity", labels=["severity"]
        )
        sent = CounterMetricFamily(
            "chargewatch_alerts_sent", "Alerts an Alertmanager accepted, by URL", labels=["url"]
        )
        failed = CounterMetricFamily(
            "chargewatch_alert_send_failures",
            "Alert cycles whose send to an Alertmanager failed, by URL",
            labels=["url"],
        )
        with self._status.lock:
            for severity in ("page", "ticket"):
                active.add_metric([severity], self._status.active_by_severity.get(severity, 0))
            for url, count in sorted(self._status.sent.items()):
                sent.add_metric([url], count)
            for url, count in sorted(self._status.send_failures.items()):
                failed.add_metric([url], count)
            cycles = CounterMetricFamily(
                "chargewatch_alert_cycles", "Alert cycles run", value=self._status.runs
            )
            cycle_failures = CounterMetricFamily(
                "chargewatch_alert_cycle_failures",
                "Alert cycles that failed (state database)",
                value=self._status.failures,
            )
        yield active
        yield sent
        yield failed
        yield cycles
        yield cycle_failures


class _ModelCollector(Collector):
    def __init__(self, status: ModelStatus) -> None:
        self._status = status

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        with self._status.lock:
            version, failures = self._status.version, self._status.load_failures
        info = GaugeMetricFamily(
            "chargewatch_model_info", "The model version that scores (1)", labels=["version"]
        )
        info.add_metric([version], 1)
        yield info
        yield CounterMetricFamily(
            "chargewatch_model_load_failures",
            "Model versions refused on loading (tampered, foreign or incompatible files)",
            value=failures,
        )


class _SpoolCollector(Collector):
    def __init__(self, spool: Spool) -> None:
        self._spool = spool

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        quarantine = self._spool.quarantine()
        yield CounterMetricFamily(
            "chargewatch_spool_records_quarantined",
            "Damaged spool records skipped and kept in the quarantine directory",
            value=quarantine.records,
        )
        yield CounterMetricFamily(
            "chargewatch_spool_bytes_quarantined",
            "Bytes of damaged spool records kept in the quarantine directory",
            value=quarantine.bytes,
        )
        yield GaugeMetricFamily(
            "chargewatch_spool_quarantine_files",
            "Files in the quarantine directory, waiting for an operator",
            value=quarantine.files,
        )
