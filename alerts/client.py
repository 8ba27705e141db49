"""A client of Alertmanager's API v2: post alerts to every Alertmanager, read their state back.

Like Prometheus, chargewatch sends every alert to every Alertmanager URL it is given (the members
of an HA cluster deduplicate among themselves); a failure at one URL does not stop the others,
and each URL's outcome is reported (``Delivery``) so the caller can count failures. Nothing is
retried within a cycle: the lifecycle sends every active alert again next cycle anyway.

Credentials may be given in a URL (``http://user:pass@host:9093``, Basic auth); they never
appear in errors, logs or reports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final, NamedTuple

import httpx
import orjson

from chargewatch.errors import AlertmanagerError
from chargewatch.settings import Settings
from chargewatch.urls import redact_url

from .collector import collector_paused
from .lifecycle import Send
from .model import fingerprint

__all__ = [
    "AlertmanagerAlert",
    "AlertmanagerClient",
    "Delivery",
    "SendReport",
    "postable",
    "redact_url",
]

logger = logging.getLogger(__name__)

CHUNK: Final = 5_000  # alerts per POST: Alertmanager takes large arrays, a few MB each
_REASON_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one cycle's send at one Alertmanager."""

    url: str  # without credentials
    sent: int  # alerts it accepted (chunks before the first failure)
    error: AlertmanagerError | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class SendReport:
    """Every URL's ``Delivery`` for one send."""

    deliveries: tuple[Delivery, ...]

    @property
    def delivered(self) -> bool:
        """Whether every Alertmanager took every alert (false with no Alertmanager at all)."""
        return bool(self.deliveries) and all(d.ok for d in self.deliveries)

    @property
    def failures(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.ok]


@dataclass(frozen=True, slots=True)
class AlertmanagerAlert:
    """One alert as an Alertmanager holds it (``GET /api/v2/alerts``).

    ``state`` is Alertmanager's: ``active``, ``suppressed`` (by the silences in ``silenced_by``
    or the alerts in ``inhibited_by``, Alertmanager fingerprints) or ``unprocessed``.
    """

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    state: str
    silenced_by: tuple[str, ...]
    inhibited_by: tuple[str, ...]
    receivers: tuple[str, ...]
    am_fingerprint: str

    @property
    def fingerprint(self) -> str:
        """chargewatch's fingerprint of these labels (``model.fingerprint``), to join with
        the alert state."""
        return fingerprint(self.labels)


def postable(send: Send) -> dict[str, Any]:
    """The API v2 ``postableAlert`` of a send (its link to the API as ``generatorURL``)."""
    alert: dict[str, Any] = {
        "labels": send.labels,
        "annotations": send.annotations,
        "startsAt": send.starts_at,
        "endsAt": send.ends_at,
    }
    link = send.annotations.get("api_url")
    if link:
        alert["generatorURL"] = link
    return alert


class AlertmanagerClient:
    """Posts to and reads from every Alertmanager in ``urls`` (base URLs, as in
    ``CHARGEWATCH_ALERTMANAGER_URLS``). Use it as a context manager, or ``close()`` it."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout_s: float = 10.0,
        chunk: int = CHUNK,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        self.urls = tuple(url.rstrip("/") for url in urls)
        self.chunk = chunk
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        headers = {"Content-Type": "application/json"}
        self._clients = {
            url: httpx.Client(timeout=timeout, headers=headers, transport=transport)
            for url in self.urls
        }
        self._encoder = _Encoder()

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertmanagerClient:
        return cls(settings.alertmanager_urls, timeout_s=settings.alertmanager_timeout_s)

    def __enter__(self) -> AlertmanagerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def send(self, sends: Iterable[Send]) -> SendReport:
        """POST ``sends`` (``postable`` each) to every Alertmanager, in chunks; concurrently
        when there are several. Never raises for an Alertmanager's failure: see the report."""
        with collector_paused():
            bodies, sizes = self._encoder.encode(sends, self.chunk)
        if len(self.urls) <= 1:
            deliveries = [self._post_all(url, bodies, sizes) for url in self.urls]
        else:
            with ThreadPoolExecutor(max_workers=len(self.urls)) as pool:
                deliveries = list(pool.map(lambda u: self._post_all(u, bodies, sizes), self.urls))
        for delivery in deliveries:
            if delivery.error is not None:
                logger.warning("alerts not delivered: %s", delivery.error)
        return SendReport(tuple(deliveries))

    def alerts(
        self,
        url: str | None = None,
        *,
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        filters: Sequence[str] = (),
    ) -> list[AlertmanagerAlert]:
        """The alerts one Alertmanager holds (the first URL by default), with their state.

        ``filters`` are Alertmanager matchers (``'station_id="CP-1"'``). Raises
        ``AlertmanagerError`` when it cannot answer.
        """
        base = (url or (self.urls[0] if self.urls else "")).rstrip("/")
        client = self._clients.get(base)
        if client is None:
            raise ValueError(f"not one of this client's Alertmanagers: {redact_url(base)!r}")
        params: list[tuple[str, str]] = [
            ("active", _flag(active)),
            ("silenced", _flag(silenced)),
            ("inhibited", _flag(inhibited)),
            *(("filter", matcher) for matcher in filters),
        ]
        response = self._request(client, "GET", base, "/api/v2/alerts", params=params)
        try:
            items = orjson.loads(response.content)
            return [_gettable(item) for item in items]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
            raise AlertmanagerError(
                redact_url(base), response.status_code, f"unexpected answer: {exc}"
            ) from exc

    # -- internals ------------------------------------------------------------------------------

    def _post_all(self, url: str, bodies: list[bytes], sizes: list[int]) -> Delivery:
        client = self._clients[url]
        started = time.perf_counter()
        sent = 0
        for body, size in zip(bodies, sizes, strict=True):
            try:
                self._request(client, "POST", url, "/api/v2/alerts", content=body)
            except AlertmanagerError as exc:
                return Delivery(redact_url(url), sent, exc, time.perf_counter() - started)
            sent += size
        return Delivery(redact_url(url), sent, None, time.perf_counter() - started)

    @staticmethod
    def _request(
        client: httpx.Client, method: str, base: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        shown = redact_url(base)
        try:
            response = client.request(method, f"{base}{path}", **kwargs)
        except httpx.TimeoutException as exc:
            raise AlertmanagerError(shown, None, f"timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise AlertmanagerError(shown, None, f"unreachable: {_no_secret(exc, base)}") from exc
        if response.status_code != 200:
            text = (
                response.text.strip().replace("\n", " ")[:_REASON_CHARS] or response.reason_phrase
            )
            raise AlertmanagerError(shown, response.status_code, f"{method} {path}: {text}")
        return response


class _Cached(NamedTuple):
    annotations: Mapping[str, str]  # the very object encoded (annotations are never mutated)
    starts_at: datetime
    head: bytes  # the alert's JSON up to its endsAt: b'{...,"endsAt":'


class _Encoder:
    """``postable`` as JSON bytes, each alert's encoding kept from one send to the next.

    Cycle after cycle an active alert goes out with the same labels, annotations and
    ``startsAt``, and only ``endsAt`` moves (one value for every active alert of a cycle). So the
    JSON before ``endsAt`` is kept by fingerprint, and reused while the send carries the very
    annotations object encoded and the same start; ``endsAt`` is encoded once per distinct
    value. At 100,000 active alerts this replaces 100,000 dicts and their encoding per cycle by
    a lookup and a concatenation each (bench/alerts.py). What a send did not ask for is
    forgotten at the next, so the cache holds one cycle's alerts at most.
    """

    def __init__(self) -> None:
        self._cache: dict[str, _Cached] = {}

    def encode(self, sends: Iterable[Send], chunk: int) -> tuple[list[bytes], list[int]]:
        """The JSON arrays of ``sends``, ``chunk`` alerts each, and how many each holds."""
        previous = self._cache
        current: dict[str, _Cached] = {}
        heads: list[bytes] = []
        ends: list[bytes] = []
        last_at: datetime | None = None
        last_end = b""
        for send in sends:
            cached = previous.get(send.fingerprint)
            if (
                cached is None
                or cached.annotations is not send.annotations
                or cached.starts_at != send.starts_at
            ):
                cached = _Cached(send.annotations, send.starts_at, _head(send))
            current[send.fingerprint] = cached
            heads.append(cached.head)
            if send.ends_at is not last_at:  # one object for all of a cycle's active alerts
                last_at = send.ends_at
                last_end = orjson.dumps(last_at, option=orjson.OPT_UTC_Z) + b"}"
            ends.append(last_end)
        self._cache = current
        starts = range(0, len(heads), chunk)
        return (
            [_array(heads[i : i + chunk], ends[i : i + chunk]) for i in starts],
            [min(chunk, len(heads) - i) for i in starts],
        )


def _array(heads: list[bytes], ends: list[bytes]) -> bytes:
    """``[head + end, ...]`` in one join, so that the body is allocated once: a copy of a few MB
    costs more than the whole join (fresh pages). When every alert ends alike (the common
    case), the end is the join's separator and no alert is copied before the join."""
    if not heads:
        return b"[]"
    common = ends[0]
    if all(end is common for end in ends):
        parts, separator = heads, common + b","
    else:
        parts, separator = [h + e for h, e in zip(heads, ends, strict=True)], b","
        common = b""
    if len(parts) == 1:
        return b"[" + parts[0] + common + b"]"
    return separator.join([b"[" + parts[0], *parts[1:-1], parts[-1] + common + b"]"])


def _head(send: Send) -> bytes:
    """The JSON object of ``postable(send)`` without its ``endsAt``, ending in ``"endsAt":``."""
    alert = postable(send)
    del alert["endsAt"]
    return orjson.dumps(alert, option=orjson.OPT_UTC_Z)[:-1] + b',"endsAt":'


def _gettable(item: dict[str, Any]) -> AlertmanagerAlert:
    status = item.get("status") or {}
    return AlertmanagerAlert(
        labels=dict(item["labels"]),
        annotations=dict(item.get("annotations") or {}),
        starts_at=datetime.fromisoformat(item["startsAt"]),
        ends_at=datetime.fromisoformat(item["endsAt"]),
        state=str(status.get("state", "")),
        silenced_by=tuple(status.get("silencedBy") or ()),
        inhibited_by=tuple(status.get("inhibitedBy") or ()),
        receivers=tuple(r["name"] for r in item.get("receivers") or ()),
        am_fingerprint=str(item.get("fingerprint", "")),
    )


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _no_secret(exc: Exception, url: str) -> str:
    """httpx's message, with the URL (which may hold credentials) replaced by its redaction."""
    return str(exc).replace(url, redact_url(url)) or type(exc).__name__
