"""Settings, read from ``CHARGEWATCH_*`` environment variables or a ``.env`` file.

Built once by the entry point (``Settings()``) and passed down; nothing reads the environment at
import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from chargewatch.errors import ConfigError


class Settings(BaseSettings):
    """Every setting of chargewatch; see the README for what each is for."""

    model_config = SettingsConfigDict(
        env_prefix="CHARGEWATCH_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "chargewatch"
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_timeout_s: float = Field(default=30.0, gt=0)
    influx_batch_lines: int = Field(default=5000, ge=1, le=100_000)
    # None: compress writes unless InfluxDB is on loopback, where there is no network to save
    # and gzip only costs CPU at both ends (bench/ingest.py measured it).
    influx_gzip: bool | None = None
    influx_max_retries: int = Field(default=6, ge=0, le=100)

    data_dir: Path = Path("./var")
    # SQLAlchemy URL of the state database; default: SQLite in the data directory.
    state_url: str | None = None

    # The durable spool in front of InfluxDB: past this many bytes waiting, ingest answers
    # 503 / CallError instead of accepting more.
    spool_max_bytes: int = Field(default=1 << 30, ge=1 << 20)
    # Largest accepted HTTP body (POST /api/v1/events), as sent and once decompressed (gzip).
    max_body_bytes: int = Field(default=16 << 20, ge=1024)
    # Most events in one POST /api/v1/events (413 beyond). The body limit alone lets 8 M tiny
    # ones through; 100,000 bound a request to about a second of CPU and tens of MB while
    # encoded, and are far more than a back office sends at once (minutes of a whole fleet).
    max_events_per_request: int = Field(default=100_000, ge=1)
    # Event batches decoded and encoded at once, each in a worker process (a few more wait, the
    # rest get 503): on a small machine, CPU stays for the OCPP stations.
    max_concurrent_batches: int = Field(default=2, ge=1, le=64)
    # Require an API key on every route but /healthz (turn off only on a closed test bench).
    api_auth: bool = True
    # Requests per API key (a token bucket per key, per service instance; 429 beyond): a burst
    # of 100, then 20 a second. One Grafana data source sends every panel of every viewer with
    # one key (a dashboard opened by 10 people at once: about 60 requests); a usage or KPI answer
    # costs up to a few hundred ms of CPU, so a script looping on one key must not have more.
    api_rate_per_s: float = Field(default=20.0, gt=0, le=100_000)
    api_rate_burst: int = Field(default=100, ge=1, le=1_000_000)

    # Scheduled detection inside `serve`: every this many seconds (0 turns it off).
    detect_interval_s: float = Field(default=30.0, ge=0)
    # Station partitions the detection job is split into; instances sharing one state database
    # each lease a fair share of them (README, Several instances), so this must be the same on
    # every instance (one with another number refuses to judge). A partition is the unit of
    # sharing: at most this many instances do detection work, and N instances split it within
    # one partition of each other (16 over 3: 6, 5, 5). Each partition costs a lease and a cursor
    # row per run; 16 serves "several instances" (up to 16) at a few ms of state database per
    # run. Changing it regroups the stations: each new partition starts from the first look-back.
    detect_partitions: int = Field(default=16, ge=1, le=4096)
    # This instance's name among those sharing the state database (in /healthz and as the
    # holder of its leases). Unset: host name, process id and a random suffix, new at each start.
    # Set it only to something unique: two instances of one name would share their leases.
    instance_id: str | None = Field(default=None, min_length=1, max_length=128)

    # Alerts (DESIGN.md, Alerts). Alertmanager base URLs, comma-separated: every alert goes to
    # each, as Prometheus sends to every member of an HA cluster; none: alerts are not sent.
    alertmanager_urls: Annotated[tuple[str, ...], NoDecode] = ()
    alertmanager_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # The receiver written into the generated alertmanager.yml, with optional Basic auth.
    alert_webhook_url: str | None = None
    alert_webhook_username: str | None = None
    alert_webhook_password: SecretStr | None = None
    # A finding on a finished session keeps firing this long after the session ended, then
    # resolves: long enough for the ticket route's group_wait to notify it, short enough that
    # Alertmanager's view is of what still needs a look.
    alert_resolve_hold_s: float = Field(default=3600.0, ge=0)
    # A station is offline (StationOffline pages) after this many of its heartbeat intervals of
    # silence; above 1 + ocpp_liveness_sample_s / interval, or it raises false alarms.
    station_offline_heartbeats: float = Field(default=3.0, gt=1, le=100)
    # Links in alert annotations: where people reach this service's API (unset: links are
    # relative paths) and Grafana (unset: no Grafana link).
    public_url: str | None = None
    grafana_url: str | None = None

    # OCPP: "monitor" accepts every id tag (watching beside an existing back office);
    # "allow_list" accepts only the tags in ocpp_allowed_id_tags (comma-separated, clear text,
    # pseudonymized at start-up).
    ocpp_auth: Literal["monitor", "allow_list"] = "monitor"
    ocpp_allowed_id_tags: SecretStr | None = None
    # Security profile 1: stations must send HTTP Basic credentials on the WebSocket upgrade,
    # checked against the hashed passwords in the state database.
    ocpp_station_auth: bool = False
    # Security profile 2: the same over TLS, with this certificate and key.
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    # Largest OCPP WebSocket message; a larger one closes the connection with 1009. Chargers send
    # a few kB; 1 MiB holds the largest message the gateway takes (500 sampled values, even
    # signed ones) and bounds what one connection can make the service buffer.
    ocpp_max_message_bytes: int = Field(default=1 << 20, ge=64 << 10, le=16 << 20)
    # Liveness: a station heard from (any message) gets a `station` heartbeat event at most this
    # often. "Last seen" then lags the last message by less than this, and a station that sends
    # every few seconds costs one point a minute, not one per message (ingest/ocppj/liveness.py).
    ocpp_liveness_sample_s: float = Field(default=60.0, ge=1, le=3600)
    # The interval BootNotification asks stations to heartbeat at (OCPP's `interval`, whole
    # seconds): the unit of the offline rule (station_offline_heartbeats of them). 300 s is what
    # central systems commonly answer; a shorter one finds a silent station sooner at the cost
    # of more traffic. Keep it above ocpp_liveness_sample_s / (station_offline_heartbeats - 1),
    # or a live station that only heartbeats may look silent between two sampled points.
    ocpp_heartbeat_interval_s: int = Field(default=300, ge=1, le=86_400)

    # Connection limits of `serve` (HTTP and OCPP alike). A client has this long to send its
    # request headers, and a station's upgrade this long to be admitted (its password checked):
    # slow or stalled clients must not hold connections (and file descriptors) for ever.
    handshake_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Open connections at most; beyond, new ones are closed at once. Each is a file descriptor
    # (the process's limit is raised to its hard limit at start, and this is kept below that):
    # room for a large fleet of stations plus API clients, with some to spare.
    max_connections: int = Field(default=10_000, ge=16)
    # Open connections from one client address at most (0: no limit): half of the default
    # max_connections, so one host never holds them all. Whole fleets may share one address
    # (a mobile operator's NAT, a VPN concentrator): raise both for those.
    max_connections_per_address: int = Field(default=5_000, ge=0)

    # Keyed HMAC key for id tags. When unset, one is generated on first use and kept in
    # ``pseudonym_key_file`` (mode 0600).
    pseudonym_key: SecretStr | None = None

    # -- where things live in the data directory: each path is named here and nowhere else --

    @property
    def spool_dir(self) -> Path:
        """The durable write spool in front of InfluxDB."""
        return self.data_dir / "spool"

    @property
    def quarantine_dir(self) -> Path:
        """Spool segments set aside because they could not be read back."""
        return self.spool_dir / "quarantine"

    @property
    def state_db_file(self) -> Path:
        """The SQLite state database used when ``state_url`` is unset."""
        return self.data_dir / "state.db"

    @property
    def state_db_url(self) -> str:
        """The state database's SQLAlchemy URL: ``state_url``, else ``state_db_file``."""
        return self.state_url or f"sqlite:///{self.state_db_file.resolve()}"

    @property
    def pseudonym_key_file(self) -> Path:
        """The generated pseudonym key (mode 0600), used when ``pseudonym_key`` is unset."""
        return self.data_dir / "pseudonym.key"

    @property
    def influxdb_dir(self) -> Path:
        """The files of the local development InfluxDB (``chargewatch influxd``)."""
        return self.data_dir / "influxdb"

    @property
    def models_dir(self) -> Path:
        """The model registry: learned detector parameters and their manifests."""
        return self.data_dir / "models"

    @property
    def lock_file(self) -> Path:
        """Held exclusively by a running ``serve``, so two never share one data directory."""
        return self.data_dir / "serve.lock"

    @property
    def alertmanager_dir(self) -> Path:
        """The files of the local development Alertmanager (``chargewatch alertmanager``)."""
        return self.data_dir / "alertmanager"

    @field_validator("influx_url")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("influx_database")
    @classmethod
    def _database_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("alertmanager_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if isinstance(value, list | tuple):
            return tuple(_http_url(str(url)) for url in value)
        return value

    @field_validator("alert_webhook_url", "public_url", "grafana_url")
    @classmethod
    def _optional_url(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else _http_url(value.strip())


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")  # no echo: it may hold a secret
    return value.rstrip("/")


def influx_is_local(settings: Settings) -> bool:
    """Whether the InfluxDB URL points at this machine's loopback."""
    host = urlsplit(settings.influx_url).hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


def load_settings() -> Settings:
    """Build the settings, turning pydantic's report into one ``ConfigError`` naming each field."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"CHARGEWATCH_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
