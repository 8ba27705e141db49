"""``chargewatch serve``: the HTTP API, the OCPP endpoint and the spool drainer in one process.

This module is the wiring: it builds each part from the settings and connects them. Everything
accepted (OCPP frame, HTTP batch) is validated, pseudonymized, formatted as line protocol and
fsynced into the spool before it is acknowledged; the drainer sends the spool to InfluxDB.
"""

from __future__ import annotations

import gc
import logging
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket
from starlette.types import ASGIApp, Receive, Scope, Send

from alerts.client import AlertmanagerClient
from alerts.job import AlertJob, Conditions, HealthSignals
from alerts.lifecycle import Policy
from alerts.model import Links
from alerts.store import AlertStore
from alerts.view import AlertReader
from analytics.jobs import DetectionJob, start_scheduler
from analytics.learned import ModelSource
from analytics.network import NetworkReader
from analytics.read import ReadModel
from api.app import create_app
from api.deps import AcceptOutcome, ApiServices, RejectedEvent
from api.ratelimit import RateLimiter
from chargewatch.errors import BackpressureError, InfluxError, TooLargeError
from chargewatch.events import Event
from chargewatch.influx import InfluxClient
from chargewatch.lockfile import ExclusiveLock
from chargewatch.schema import LineFormatter
from chargewatch.settings import Settings
from chargewatch.state import StateStore
from chargewatch.verdicts import VerdictDesk
from ingest.group_commit import GroupCommit
from ingest.ocppj import Admit, AuthPolicy, OcppGateway, starlette_connection
from ingest.ocppj.shared_book import SharedBook
from ingest.pseudonym import Pseudonymizer, load_pseudonymizer
from ingest.spool import Spool, SpoolDrainer
from models.registry import Registry
from service.batches import BatchEncoders, BatchGroups, EncodedBatch
from service.connections import ConnectionGuard, guarded_protocols, raise_open_file_limit
from service.heap import HeapFreezer
from service.metrics import Metrics

logger = logging.getLogger(__name__)

# Request headers at most (h11's default, said here): an upgrade with Basic credentials is <1 kB.
_MAX_HEADER_BYTES = 16 * 1024
# File descriptors kept for the service itself (spool, state database, InfluxDB, logs).
_RESERVED_FILES = 256


@dataclass(frozen=True, slots=True)
class _Transactions:
    state: StateStore

    def next_id(self) -> int:
        return self.state.next_value()


class Service:
    """All long-lived parts of a running service; ``start`` and ``stop`` bracket its life."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.state = StateStore(settings.state_db_url)
        self.pseudonymize: Pseudonymizer = load_pseudonymizer(settings)
        self.spool = Spool(
            settings.spool_dir,
            quarantine_dir=settings.quarantine_dir,
            max_bytes=settings.spool_max_bytes,
        )
        self.influx = InfluxClient.from_settings(settings)
        self.batches = BatchEncoders(
            self.pseudonymize,
            workers=settings.max_concurrent_batches,
            max_body_bytes=settings.max_body_bytes,
            max_events=settings.max_events_per_request,
        )
        # Bodies waiting for a worker together: encoded and spooled (one fsync) as one group.
        self.batch_groups = BatchGroups(
            self.batches,
            self._store_batch,
            workers=settings.max_concurrent_batches,
            max_group_bytes=settings.max_body_bytes,
        )
        self.drainer = SpoolDrainer(
            self.spool,
            self._write_to_influx,
            write_body=self._write_to_influx,  # records' payloads as they are, never split
            batch_lines=settings.influx_batch_lines,
        )
        allowed = settings.ocpp_allowed_id_tags
        tags = allowed.get_secret_value().split(",") if allowed is not None else []
        check_password = self.state.check_station_password if settings.ocpp_station_auth else None
        self.gateway = OcppGateway(
            sink=self._accept_ocpp,
            pseudonymize=self.pseudonymize,
            transactions=_Transactions(self.state),
            auth=AuthPolicy(
                mode=settings.ocpp_auth,
                allowed_pseudonyms=frozenset(self.pseudonymize(t) for t in tags if t.strip()),
            ),
            check_password=check_password,
            handshake_timeout_s=settings.handshake_timeout_s,
            max_frame_bytes=settings.ocpp_max_message_bytes,
            liveness_sample_s=settings.ocpp_liveness_sample_s,
            heartbeat_interval_s=settings.ocpp_heartbeat_interval_s,
            # Open transactions in the state database: a station may come back on any instance.
            book=SharedBook(self.state.engine),
        )
        # Its own client: the drainer's thread and the job's thread never share one.
        self._formatter = LineFormatter()  # OCPP events to line protocol (``_accept_ocpp``)
        # OCPP messages from every station, a group per fsync on a writer thread of its own
        self._ocpp_spool = GroupCommit(self.spool)
        self.detect_client = InfluxClient.from_settings(settings)
        # the promoted model version, asked for at every detection run (``analytics.learned``)
        self.models = ModelSource(Registry(settings.models_dir, self.state.engine))
        self.metrics.watch_model(self.models.status)
        self.detection = DetectionJob(
            self.detect_client,
            self.state,
            detectors=self.models,
            partitions=settings.detect_partitions,
            # one interval, renewed four times in it (analytics.jobs): a dead instance's
            # partitions are taken and judged by another within two intervals
            lease_s=settings.detect_interval_s if settings.detect_interval_s > 0 else 60.0,
            instance_id=settings.instance_id,
        )
        self.metrics.detect_partitions.set_function(lambda: len(self.detection.status.partitions))
        self.alert_client: InfluxClient | None = None
        self.alerts: AlertJob | None = None
        if settings.alertmanager_urls and settings.detect_interval_s > 0:
            self.alert_client = InfluxClient.from_settings(settings)  # the alert job's thread
            self.alerts = _alert_job(self, self.alert_client)
            self.metrics.watch_alerts(self.alerts.status)
        # /api/v1/alerts reads the stored alerts whether or not alerting runs (none: an empty
        # list, state "unknown"); its own Alertmanager client gives up quickly: a request must
        # not hang on an Alertmanager that does not answer.
        self.alert_reader: AlertReader | None = AlertReader(
            AlertStore(self.state.engine),
            AlertmanagerClient(settings.alertmanager_urls, timeout_s=2.0),
        )
        # The read API's own client too: its requests never wait behind the drainer's writes.
        self.read_client = InfluxClient.from_settings(settings)
        self.reads = ReadModel(self.read_client, self.state)
        self.network = NetworkReader(self.read_client, self.state)
        self.scheduler: Any = None
        self.metrics.spool_events.set_function(lambda: self.spool.depth().lines)
        self.metrics.spool_bytes.set_function(lambda: self.spool.depth().bytes)
        self.metrics.connected_stations.set_function(lambda: self.gateway.connected_stations)
        self.metrics.watch_ocpp(self.gateway)
        self.metrics.watch_spool(self.spool)

    def start(self) -> None:
        try:
            self.influx.create_database()
        except InfluxError as exc:  # the spool holds everything until InfluxDB answers
            logger.warning("InfluxDB not ready at start-up (%s); spooling until it is", exc)
        self.drainer.start()
        if self.settings.detect_interval_s > 0:
            self.scheduler = start_scheduler(
                self.detection, interval_s=self.settings.detect_interval_s
            )
            if self.alerts is not None:
                _schedule_alerts(self.scheduler, self.alerts, self.settings.detect_interval_s)

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.detection.release()  # others take its partitions now, not when they expire
        self.drainer.stop()
        self.gateway.close()
        self._ocpp_spool.close()  # what it gathered is stored before the spool closes
        self.batches.close()
        self.detect_client.close()
        if self.alerts is not None and self.alert_client is not None:
            self.alerts.alertmanagers.close()
            self.alert_client.close()
        if self.alert_reader is not None:
            self.alert_reader.alertmanagers.close()
        self.read_client.close()
        self.spool.close()
        self.influx.close()
        self.state.close()

    # -- the two ways in ------------------------------------------------------------------------

    def accept_json(self, parts: list[bytes], *, gzipped: bool, max_listed: int) -> AcceptOutcome:
        """HTTP batches: decode, validate, pseudonymize, format (in a worker process); then
        spool (fsync) the whole batch as one record, with the batches that waited with it
        (``service.batches.BatchGroups``) — then answer (``api.deps.EventAcceptor``)."""
        batch = self.batch_groups.accept(parts, gzipped=gzipped, max_listed=max_listed)
        for kind, count in batch.accepted_by_type.items():
            self.metrics.accepted.labels("http", kind).inc(count)
        for field, count in batch.rejected_by_field.items():
            self.metrics.rejected.labels("http", field).inc(count)
        return AcceptOutcome(
            accepted_by_type=batch.accepted_by_type,
            rejected=[RejectedEvent(*listed) for listed in batch.listed],
            rejected_count=sum(batch.rejected_by_field.values()),
        )

    def _store_batch(self, batch: EncodedBatch) -> None:
        """Spool the lines of one batch or group as one record (``BatchGroups``' store)."""
        if not batch.lines:
            return
        payload = (batch.lines + "\n").encode("utf-8")  # one line per event: no line is split
        try:
            self.spool.append_payload(payload, batch.lines.count("\n") + 1)
        except BackpressureError:
            size = len(payload)
            if size > self.settings.spool_max_bytes:  # it would never fit: not worth a retry
                raise TooLargeError(
                    f"the batch takes {size} bytes in the spool, more than it ever holds "
                    f"({self.settings.spool_max_bytes}); send smaller batches"
                ) from None
            raise

    async def _accept_ocpp(self, events: list[Event]) -> None:
        # one formatter for the process, on the event loop's thread only: its receive clock
        # stays strictly increasing across messages (the order of arrival); a reading stamped
        # far from its arrival (a 1970 clock, a late upload) gets its ``reading_rx`` line too
        lines = [line for event in events for line in self._formatter.format_lines(event)]
        # fsync off the event loop; the CallResult goes out only after this returns.
        await self._ocpp_spool.append(lines)
        for event in events:
            self.metrics.accepted.labels("ocpp", event.type).inc()

    def _write_to_influx(self, lines: list[str] | bytes) -> None:
        began = time.perf_counter()
        try:
            self.influx.write(lines)
        except InfluxError:
            self.metrics.influx_write_errors.inc()
            raise
        self.metrics.influx_write_seconds.observe(time.perf_counter() - began)

    def health(self) -> dict[str, object]:
        """``/healthz``'s answer. It needs no key (load balancers ask it), so the errors it
        repeats name no address and no database (``_public``): those are in the log."""
        answer = self._health()
        for name, value in answer.items():
            if name.endswith("_last_error") and isinstance(value, str):
                answer[name] = self._public(value)
            elif name == "alerts_source_errors" and isinstance(value, dict):
                answer[name] = {k: self._public(str(v)) for k, v in value.items()}
        return answer

    def _public(self, error: str) -> str:
        """``error`` without URLs, host:port addresses or the InfluxDB database's name."""
        error = _URL.sub("(address in the log)", error)
        error = _HOST_PORT.sub("(address in the log)", error)
        database = re.escape(self.settings.influx_database)
        # quoted, or after "database" (InfluxDB's "database not found: NAME"), not a word that
        # happens to be the name (the default is "chargewatch")
        named = rf"(['\"]){database}\1|(?<=database ){database}\b|(?<=not found: ){database}\b"
        return re.sub(named, "(database in the log)", error)

    def _health(self) -> dict[str, object]:
        depth = self.spool.depth()
        quarantine = self.spool.quarantine()
        return {
            # "degraded", still HTTP 200: damaged spool records were set aside (each one counted,
            # its bytes kept) and the service goes on; a restart would not mend them, so a
            # liveness probe must not restart for this. Clears once an operator moves the
            # quarantine files away.
            "status": "degraded" if quarantine.files else "ok",
            "spool_lines": depth.lines,
            "spool_bytes": depth.bytes,
            "spool_quarantined_records": quarantine.records,
            "spool_quarantined_bytes": quarantine.bytes,
            "spool_quarantine_files": quarantine.files,
            "influx_last_error": self.drainer.last_error,
            "stations_connected": self.gateway.connected_stations,
            "detection_runs": self.detection.status.runs,
            "detection_failures": self.detection.status.failures,
            "detection_last_error": self.detection.status.last_error,
            **self._partition_health(),
            **self._model_health(),
            **self._alert_health(),
        }

    def _model_health(self) -> dict[str, object]:
        status = self.models.status
        with status.lock:
            return {
                "model_version": status.version,  # "built-in" when none is promoted
                "model_load_failures": status.load_failures,
                "model_last_error": status.last_error,
            }

    def _partition_health(self) -> dict[str, object]:
        """Which station partitions this instance judges (analytics.jobs), by its name."""
        status = self.detection.status
        with status.lock:
            return {
                "instance_id": status.instance_id,
                "detection_partitions": list(status.partitions),
                "detection_partition_count": status.partition_count,
            }

    def _alert_health(self) -> dict[str, object]:
        if self.alerts is None:
            return {"alerts": "off (no CHARGEWATCH_ALERTMANAGER_URLS)"}
        status = self.alerts.status
        with status.lock:
            last = status.last_run_at
            return {
                "alerts_last_cycle": None if last is None else last.isoformat(),
                "alerts_last_error": status.last_error,
                "alerts_source_errors": dict(status.source_errors),
            }

    def health_signals(self) -> HealthSignals:
        """What the alert job judges the service's own health by (``alerts.job``)."""
        status = self.detection.status
        with status.lock:
            runs, failures, error = status.runs, status.failures, status.last_error
        return HealthSignals(
            spool_lines=self.spool.depth().lines,
            influx_error=self.drainer.last_error,
            detection_runs=runs,
            detection_failures=failures,
            detection_error=error,
        )


# What /healthz leaves out of the errors it repeats: a URL (with any credentials in it), and an
# address as host:port or IPv4 address.
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
_HOST_PORT = re.compile(r"\b(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost)(?::\d+)?\b")


def _alert_job(service: Service, client: InfluxClient) -> AlertJob:
    settings = service.settings
    policy = Policy.from_settings(settings)
    return AlertJob(
        conditions=Conditions(
            client,
            links=Links.from_settings(settings),
            policy=policy,
            offline_after=settings.station_offline_heartbeats,
            catalog=service.state,
        ),
        store=AlertStore(service.state.engine),
        alertmanagers=AlertmanagerClient.from_settings(settings),
        influx=client,
        policy=policy,
        health=service.health_signals,
    )


def _schedule_alerts(scheduler: Any, job: AlertJob, interval_s: float) -> None:
    """The alert cycle at detection's interval, half an interval after it: it reads the
    flags detection just wrote."""
    scheduler.add_job(
        job.run_guarded,
        "interval",
        seconds=interval_s,
        args=[lambda: datetime.now(UTC)],
        id="alerts",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC) + timedelta(seconds=interval_s / 2),
    )


@dataclass(frozen=True, slots=True)
class _OcppEndpoint:
    """The gateway as ``api.ocpp`` sees it (``api.deps.OcppEndpoint``)."""

    service: Service

    async def admit(
        self,
        station_id: str,
        address: str,
        offered: Sequence[str],
        credentials: tuple[str, str] | None,
    ) -> Admit:
        return await self.service.gateway.admit(station_id, address, offered, credentials)

    async def serve(self, station_id: str, subprotocol: str, websocket: WebSocket) -> None:
        await self.service.gateway.handle(station_id, subprotocol, starlette_connection(websocket))


def _headers_bounded(app: ASGIApp) -> ASGIApp:
    """``app`` behind a bound on the request's headers: more than ``_MAX_HEADER_BYTES`` in all
    gets 431 (a WebSocket handshake: refused). uvicorn's h11 bound applies only while headers
    are still arriving, so headers sent in one write passed up to about 200 KB."""

    async def bounded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            size = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
            if size > _MAX_HEADER_BYTES:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = b'{"detail":"request headers: more than %d bytes in all"}' % (
                    _MAX_HEADER_BYTES
                )
                await send(
                    {
                        "type": "http.response.start",
                        "status": 431,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return bounded


def build_app(service: Service) -> FastAPI:
    settings = service.settings
    return create_app(
        ApiServices(
            accept_events=service.accept_json,
            role_of=service.state.role_of,
            health=service.health,
            metrics=service.metrics.render,
            max_body_bytes=settings.max_body_bytes,
            max_concurrent_batches=settings.max_concurrent_batches,
            body_timeout_s=settings.handshake_timeout_s,
            api_auth=settings.api_auth,
            ocpp=_OcppEndpoint(service),
            reads=service.reads,
            alerts=service.alert_reader,
            network=service.network,
            verdicts=VerdictDesk(service.read_client, service.state),
            rate_limiter=RateLimiter(
                rate_per_s=settings.api_rate_per_s, burst=settings.api_rate_burst
            ),
        )
    )


def _connection_guard(service: Service) -> ConnectionGuard:
    """The connection caps of the settings, within the process's file descriptors."""
    settings = service.settings
    usable = raise_open_file_limit() - _RESERVED_FILES
    if settings.max_connections > usable:
        logger.warning(
            "CHARGEWATCH_MAX_CONNECTIONS %d is more than the open-file limit allows: %d",
            settings.max_connections,
            usable,
        )
    guard = ConnectionGuard(
        max_connections=max(1, min(settings.max_connections, usable)),
        per_address=settings.max_connections_per_address,
        on_close=lambda reason: service.metrics.connections_closed.labels(reason).inc(),
    )
    service.metrics.open_connections.set_function(lambda: guard.open)
    return guard


def run(settings: Settings, *, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT, then stop cleanly (uvicorn handles the signals).

    Refuses (``InUseError``) while another ``serve`` holds the data directory: two would race
    on the spool's cursor. The lock dies with the process, even by SIGKILL.
    """
    with ExclusiveLock(
        settings.lock_file,
        what=f"the data directory {settings.data_dir}",
        holder="another chargewatch serve",
    ):
        _run(settings, host=host, port=port)


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(0)  # a stop asked for and carried out is a clean exit (CONTRACTS section 5)


def _run(settings: Settings, *, host: str, port: int) -> None:
    service = Service(settings)
    service.start()
    # Start-up objects (libraries, schemas) never die: keep them out of the collector's passes,
    # which otherwise stall every connection for 0.4-0.8 s at thousands of stations
    # (bench/ocpp_load.py); so too the survivors of each full pass later (``service.heap``).
    gc.freeze()
    freezer = HeapFreezer()
    freezer.install()
    try:
        # uvicorn answers SIGTERM by shutting down, then raises the signal again with the handler
        # it found: the default one would end the process before ``service.stop`` (spool, leases
        # given back). This one turns it into SystemExit, which runs the ``finally``.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        http, ws = guarded_protocols(_connection_guard(service), settings.handshake_timeout_s)
        config = uvicorn.Config(
            _headers_bounded(build_app(service)),
            host=host,
            port=port,
            ssl_certfile=str(settings.tls_certfile) if settings.tls_certfile else None,
            ssl_keyfile=str(settings.tls_keyfile) if settings.tls_keyfile else None,
            http=http,
            ws=ws,
            ws_max_size=settings.ocpp_max_message_bytes,  # larger: closed with 1009
            ws_ping_interval=20.0,  # dead stations found within 40 s
            ws_ping_timeout=20.0,
            timeout_keep_alive=5,  # idle HTTP connections
            h11_max_incomplete_event_size=_MAX_HEADER_BYTES,
            log_level="warning",
            lifespan="off",
        )
        uvicorn.Server(config).run()
    finally:
        freezer.remove()
        service.stop()
