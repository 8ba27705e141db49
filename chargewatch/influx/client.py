"""A small client for the InfluxDB v1 HTTP API (``/ping``, ``/write``, ``/query``) on httpx.

The v1 API is served by InfluxDB 1.x, by 2.x through its compatibility endpoints and by 3.x Core,
so this one client serves every version in use (see DESIGN.md, section InfluxDB).

Retry policy: connection errors, timeouts, 5xx (but 501) and 429 are retried up to ``max_retries``
times with capped exponential backoff and full jitter (``uniform(0, min(cap, base * 2**n))``).
A ``Retry-After`` given in seconds is honoured as asked, up to ``MAX_RETRY_AFTER_S`` (60 s), even
above ``backoff_cap_s``: the server knows best when it can take work again, and hammering an
overloaded server sooner only prolongs the overload. HTTP-date forms of ``Retry-After`` fall back
to the backoff (reading the clock to compare dates is not worth it for a LAN database).
400, 401/403 and 404 are final at once: sending the same thing again cannot succeed.

Retries are logged at INFO and counted (``BatchWriter.retries``); what matters to the caller is the
outcome, which is success or one raised error, so a retry that works leaves WARNING logs quiet.
"""

from __future__ import annotations

import logging
import random
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

import httpx
import numpy as np
import orjson

from chargewatch.errors import (
    InfluxAuthError,
    InfluxConnectionError,
    InfluxError,
    InfluxNotFoundError,
    InfluxRequestError,
    InfluxServerError,
)
from chargewatch.settings import Settings, influx_is_local
from chargewatch.urls import redact_url

__all__ = [
    "MAX_RETRY_AFTER_S",
    "InfluxClient",
    "Series",
    "quote_ident",
    "quote_literal",
]

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER_S: Final = 60.0
"""The longest ``Retry-After`` honoured; a longer one is cut to this."""

_PRECISIONS: Final = frozenset({"ns", "u", "ms", "s", "m", "h"})
_QUERY_CHUNK_ROWS: Final = 10_000
_GZIP_LEVEL: Final = 1  # on a LAN, compressing fast matters more than compressing small
_GZIP_WBITS: Final = 31  # zlib's way of asking for a gzip header and trailer
_NUMERIC_KINDS: Final = frozenset({int, float, type(None)})


def quote_ident(name: str) -> str:
    """An InfluxQL identifier (database, measurement, tag or field key) in double quotes."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def quote_literal(value: str) -> str:
    """An InfluxQL string literal (a tag value to compare with) in single quotes."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a query result, column by column.

    ``columns["time"]`` is int64 in the query's epoch unit. Numeric columns are float64 with NaN
    for null (InfluxDB's JSON does not tell integer fields from integral floats, so integers come
    back as float64 too: exact up to 2**53). Boolean columns are ``bool`` when no value is null,
    else ``object`` with ``None``. String columns and mixed columns are ``object`` with ``None``.
    """

    name: str
    tags: dict[str, str]
    columns: dict[str, np.ndarray[Any, Any]] = field(repr=False)

    def __len__(self) -> int:
        for values in self.columns.values():
            return len(values)
        return 0


@dataclass(frozen=True, slots=True)
class _Sent:
    """What one successful request cost: body bytes on the wire and retries it took."""

    body_bytes: int
    retries: int


class InfluxClient:
    """Synchronous client for the InfluxDB v1 HTTP API of one database.

    ``gzip`` compresses write bodies (level 1); ``transport`` and ``sleep`` exist for tests. One
    client may be shared by threads (httpx's connection pool is thread-safe); close it when done.
    """

    def __init__(
        self,
        *,
        url: str,
        database: str,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
        gzip: bool = True,
        max_retries: int = 6,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {url!r}")
        if not database:
            raise ValueError("database must not be empty")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {max_retries}")
        # shown in messages and logs without its credentials; requests go to the URL as given
        self.url = redact_url(url.rstrip("/"))
        self._secrets = tuple(
            secret for secret in (password, _url_password(url)) if secret and len(secret) > 2
        )
        self.database = database
        self.username = username
        self.gzip = gzip
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._sleep = sleep
        self._random = random.Random()
        auth = httpx.BasicAuth(username, password or "") if username is not None else None
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            auth=auth,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            # Answers are not compressed: on loopback and a LAN, influxd's gzip made a 1 M row
            # query 15-50 % slower than sending it plain (``gzip`` compresses writes only).
            headers={"Accept-Encoding": "identity"},
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> InfluxClient:
        """A client configured from the ``CHARGEWATCH_INFLUX_*`` settings."""
        password = settings.influx_password
        return cls(
            url=settings.influx_url,
            database=settings.influx_database,
            username=settings.influx_username,
            password=password.get_secret_value() if password is not None else None,
            timeout_s=settings.influx_timeout_s,
            gzip=settings.influx_gzip
            if settings.influx_gzip is not None
            else not influx_is_local(settings),
            max_retries=settings.influx_max_retries,
        )

    def __repr__(self) -> str:
        return f"InfluxClient(url={self.url!r}, database={self.database!r})"

    # -- public API -----------------------------------------------------------------------------

    def ping(self) -> str:
        """The server's version (``X-Influxdb-Version``; ``"unknown"`` when it does not say)."""
        response, _ = self._request("GET", "/ping")
        response.close()
        version: str = response.headers.get("X-Influxdb-Version", "unknown")
        return version

    def create_database(self) -> None:
        """Create the client's database; nothing happens when it exists already."""
        self.query(f"CREATE DATABASE {quote_ident(self.database)}")

    def write(self, lines: Sequence[str] | bytes, *, precision: str = "ns") -> None:
        """Write line protocol in ONE request (one batch), retried as the module docstring says.

        ``lines`` are lines without their line breaks, or a ready body of bytes. An empty batch
        sends nothing. Raises ``InfluxRequestError`` naming the rejected line (the server keeps the
        other lines of the batch), ``InfluxNotFoundError`` when the database does not exist.
        """
        self._write(lines, precision=precision)

    def query(self, influxql: str, *, epoch: str = "ns") -> list[Series]:
        """Run InfluxQL (one or more statements) and return every series of every statement.

        Results are streamed in chunks of 10,000 rows and assembled once per series, so a
        million-row answer costs linear time. A statement-level error raises
        ``InfluxRequestError`` with the server's message (``InfluxNotFoundError`` for a missing
        database).
        """
        assembler = _SeriesAssembler()
        for chunk in self._chunks(influxql, epoch):
            assembler.add(chunk)
        return assembler.series()

    def iter_query(self, influxql: str, *, epoch: str = "ns") -> Iterator[Series]:
        """``query``, streamed: the series of each chunk of the answer (10,000 rows) as soon as
        it is read, so a reader that folds them into its own columns never holds the whole
        answer as JSON objects. A series longer than a chunk comes in several parts (same name
        and tags, consecutive rows). Errors as ``query``."""
        for chunk in self._chunks(influxql, epoch):
            assembler = _SeriesAssembler()
            assembler.add(chunk)
            yield from assembler.series()

    def _chunks(self, influxql: str, epoch: str) -> Iterator[Any]:
        """The chunks of a streamed /query answer, each a parsed JSON object, as they are read;
        the response is closed however the reading ends."""
        if epoch not in _PRECISIONS:
            raise ValueError(f"epoch must be one of {sorted(_PRECISIONS)}, not {epoch!r}")
        form = {
            "q": influxql,
            "db": self.database,
            "epoch": epoch,
            "chunked": "true",
            "chunk_size": str(_QUERY_CHUNK_ROWS),
        }
        response, _ = self._request("POST", "/query", data=form, stream=True)
        try:
            yield from _json_lines(response)
        except httpx.HTTPError as exc:
            raise InfluxConnectionError(
                f"the answer of InfluxDB at {self.url} broke off while it was read: {exc}"
            ) from exc
        finally:
            response.close()

    def close(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _write(self, lines: Sequence[str] | bytes, *, precision: str) -> _Sent:
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, not {precision!r}")
        if isinstance(lines, bytes):
            body = lines
        else:
            try:
                body = "\n".join(lines).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(
                    "line protocol holds a lone surrogate, which UTF-8 cannot carry"
                ) from exc
        if not body:
            return _Sent(body_bytes=0, retries=0)
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            body = zlib.compress(body, _GZIP_LEVEL, wbits=_GZIP_WBITS)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self.database, "precision": precision}
        response, retries = self._request(
            "POST", "/write", params=params, content=body, headers=headers
        )
        response.close()
        return _Sent(body_bytes=len(body), retries=retries)

    def _request(
        self,
        method: str,
        path: str,
        *,
        stream: bool = False,
        **kwargs: Any,
    ) -> tuple[httpx.Response, int]:
        """Send with retries; return the successful (2xx) response and the retries it took."""
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                request = self._http.build_request(method, path, **kwargs)
                response = self._http.send(request, stream=stream)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise InfluxConnectionError(
                    f"cannot send to {self.url}: {self._scrub(str(exc))}"
                ) from exc
            except httpx.TransportError as exc:
                if last:
                    raise InfluxConnectionError(
                        f"cannot reach InfluxDB at {self.url} after {attempts} attempt(s): "
                        f"{type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}"
                    ) from exc
                delay = self._backoff(attempt)
                logger.info(
                    "InfluxDB at %s unreachable (%s), retry %d of %d in %.2f s",
                    self.url,
                    type(exc).__name__,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                self._sleep(delay)
                continue
            except httpx.HTTPError as exc:  # not the network: a bad encoding, redirects
                raise InfluxConnectionError(
                    f"InfluxDB at {self.url} sent an answer that cannot be read: "
                    f"{self._scrub(str(exc))}"
                ) from exc
            if response.is_success:
                return response, attempt
            status = response.status_code
            text = _error_text(response)
            if _is_retryable(status) and not last:
                retry_after = self._retry_after(response)
                delay = self._backoff(attempt) if retry_after is None else retry_after
                logger.info(
                    "InfluxDB at %s answered %d on %s, retry %d of %d in %.2f s",
                    self.url,
                    status,
                    path,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                self._sleep(delay)
                continue
            raise self._error_for(status, path, text, attempts=attempt + 1)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2.0 ** min(attempt, 62))
        return self._random.uniform(0.0, ceiling)

    @staticmethod
    def _retry_after(response: httpx.Response) -> float | None:
        value = response.headers.get("Retry-After")
        if value is None:
            return None
        try:
            seconds = float(value.strip())
        except ValueError:
            return None  # an HTTP date: fall back to the backoff
        if not seconds >= 0.0:  # also catches NaN
            return None
        return min(seconds, MAX_RETRY_AFTER_S)

    def _scrub(self, text: str) -> str:
        """``text`` with this client's password and the URL's credentials replaced."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _error_for(self, status: int, path: str, text: str, *, attempts: int) -> InfluxError:
        where = f"InfluxDB at {self.url}"
        text = self._scrub(text)
        if status in (401, 403):
            who = f"user {self.username!r}" if self.username is not None else "no credentials"
            return InfluxAuthError(f"{where} refused {who} ({status}): {text}")
        if status == 404:
            return InfluxNotFoundError(f"{where} ({path}, database {self.database!r}): {text}")
        if _is_retryable(status) or status >= 500:
            return InfluxServerError(
                f"{where} answered {status} to {attempts} attempt(s) in a row on {path}: {text}"
            )
        return InfluxRequestError(f"{where} rejected the request to {path} ({status}): {text}")


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:  # a port that is no number: httpx refuses the URL on the first request
        return None


def _is_retryable(status: int) -> bool:
    """429 and 5xx may clear by themselves; 501 Not Implemented never will."""
    return status == 429 or (500 <= status <= 599 and status != 501)


def _error_text(response: httpx.Response) -> str:
    """The server's ``{"error": ...}`` message, or the start of whatever else it sent."""
    try:
        raw = response.read()
    except httpx.HTTPError:
        return "(no body)"
    finally:
        response.close()
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
        return str(decoded["error"])
    text = raw[:500].decode("utf-8", "replace").strip()
    return text or response.reason_phrase or "(no body)"


def _json_lines(response: httpx.Response) -> Iterator[Any]:
    """Each JSON document of a chunked ``/query`` answer (one a line), or the single one."""
    buffer = bytearray()  # grows in place: a huge unchunked answer stays linear to assemble
    for block in response.iter_bytes():
        buffer += block
        if b"\n" not in block:
            continue
        end = buffer.rindex(b"\n")
        for line in bytes(buffer[:end]).split(b"\n"):
            if line.strip():
                yield _loads(line)
        del buffer[: end + 1]
    if buffer.strip():
        yield _loads(bytes(buffer))


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InfluxRequestError(f"InfluxDB sent an answer that is not JSON: {exc}") from exc


class _SeriesAssembler:
    """Merges the chunks of a query answer into whole series, then builds arrays once."""

    def __init__(self) -> None:
        self._rows: dict[tuple[int, str, tuple[tuple[str, str], ...]], list[list[Any]]] = {}
        self._columns: dict[tuple[int, str, tuple[tuple[str, str], ...]], list[str]] = {}

    def add(self, chunk: Any) -> None:
        try:
            self._add(chunk)
        except (AttributeError, TypeError, ValueError) as exc:
            raise InfluxRequestError(
                f"InfluxDB sent a query answer of an unknown shape: {exc}"
            ) from exc

    def _add(self, chunk: Any) -> None:
        if "error" in chunk:
            raise InfluxRequestError(f"InfluxDB rejected the query: {chunk['error']}")
        for result in chunk.get("results", ()):
            error = result.get("error")
            if error is not None:
                statement = result.get("statement_id", 0)
                if str(error).startswith("database not found"):
                    raise InfluxNotFoundError(f"InfluxDB: statement {statement}: {error}")
                raise InfluxRequestError(f"InfluxDB rejected statement {statement}: {error}")
            for series in result.get("series", ()):
                tags = series.get("tags") or {}
                key = (
                    int(result.get("statement_id", 0)),
                    str(series.get("name", "")),
                    tuple(sorted((str(k), "" if v is None else str(v)) for k, v in tags.items())),
                )
                rows = self._rows.get(key)
                if rows is None:
                    self._rows[key] = rows = []
                    self._columns[key] = [str(c) for c in series.get("columns", ())]
                rows.extend(series.get("values") or ())

    def series(self) -> list[Series]:
        out = []
        for key, rows in self._rows.items():
            _, name, tags = key
            names = self._columns[key]
            columns = {
                column: _column_array(column, values)
                for column, values in zip(names, _transpose(rows, len(names)), strict=True)
            }
            out.append(Series(name=name, tags=dict(tags), columns=columns))
        return out


def _transpose(rows: list[list[Any]], width: int) -> list[np.ndarray[Any, Any]]:
    """The columns of ``rows``, as object arrays, in one C-level pass (``zip(*rows)`` costs
    twice as much on a million rows)."""
    table = np.empty((len(rows), width), dtype=object)
    if rows:
        table[:] = rows
    return [table[:, j] for j in range(width)]


def _column_array(name: str, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    kinds = set(map(type, values))  # one pass; decides the dtype without guessing
    if name == "time" and kinds <= {int}:
        return values.astype(np.int64)
    if kinds <= _NUMERIC_KINDS:
        return values.astype(np.float64)  # None becomes NaN
    if kinds == {bool}:
        return values.astype(np.bool_)
    return values.copy()  # strings, bools with nulls, mixed types, RFC 3339 times
