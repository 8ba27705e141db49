"""The errors chargewatch raises.

Every error the project raises derives from one root, so callers can catch exactly what they mean::

    ChargewatchError
    ├── ConfigError                 a setting is missing or invalid
    ├── EventError                  one event (a line, an array item, a frame) is invalid
    ├── BackpressureError           full for now (the spool): the sender should retry later
    ├── TooLargeError               more than a limit takes at once: split it, a retry never helps
    ├── InUseError                  a data directory or spool is held by another process
    ├── InfluxError                 talking to InfluxDB failed
    │   ├── InfluxConnectionError   unreachable, refused, timed out (after retries)
    │   ├── InfluxAuthError         401/403: wrong or missing credentials
    │   ├── InfluxNotFoundError     404: no such database or endpoint
    │   ├── InfluxRequestError      400: the server rejected what was sent (bad line, bad query)
    │   └── InfluxServerError       5xx that did not clear within the retries
    ├── InfluxdError                the local development InfluxDB could not be installed or run
    ├── AlertmanagerError           talking to an Alertmanager failed (its URL, and status if any)
    ├── LocalAlertmanagerError      the local development Alertmanager could not be installed or run
    └── NotFittedError              a detector was asked to score before it was fitted

Errors of other libraries (httpx, orjson, OS errors) are translated where they occur, with the
original kept as ``__cause__``.
"""

from __future__ import annotations


class ChargewatchError(Exception):
    """Root of every error chargewatch raises."""


class ConfigError(ChargewatchError):
    """A setting is missing or invalid."""


class EventError(ChargewatchError):
    """One event is invalid.

    ``field`` names the offending key (``None`` when the whole record is at fault, e.g. bad JSON)
    and ``reason`` says what is wrong with it, in words an operator understands.
    """

    def __init__(self, field: str | None, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class BackpressureError(ChargewatchError):
    """Nothing is wrong with the request, but it cannot be taken now; retry later."""


class TooLargeError(ChargewatchError):
    """The request is larger than a limit allows (a batch bigger than the whole spool): sending
    it again unchanged can never succeed, so it is not backpressure; split it."""


class InUseError(ChargewatchError):
    """A data directory or spool is locked by another process (or another opener in this one)."""


class InfluxError(ChargewatchError):
    """Talking to InfluxDB failed."""


class InfluxConnectionError(InfluxError):
    """InfluxDB could not be reached (refused, timed out, DNS), even after retries."""


class InfluxAuthError(InfluxError):
    """InfluxDB refused the credentials (HTTP 401 or 403)."""


class InfluxNotFoundError(InfluxError):
    """The database or endpoint does not exist (HTTP 404)."""


class InfluxRequestError(InfluxError):
    """InfluxDB rejected the request itself (HTTP 400: bad line protocol, bad InfluxQL)."""


class InfluxServerError(InfluxError):
    """InfluxDB kept answering 5xx (or 429) until the retries ran out."""


class InfluxdError(ChargewatchError):
    """The local development InfluxDB could not be installed, started or stopped."""


class AlertmanagerError(ChargewatchError):
    """One Alertmanager did not take or answer a request.

    ``url`` is the Alertmanager's base URL (without credentials); ``status`` the HTTP status it
    answered, or ``None`` when it could not be reached at all (refused, timed out, DNS).
    """

    def __init__(self, url: str, status: int | None, reason: str) -> None:
        self.url = url
        self.status = status
        self.reason = reason
        where = f"{url}: HTTP {status}" if status is not None else url
        super().__init__(f"Alertmanager {where}: {reason}")


class LocalAlertmanagerError(ChargewatchError):
    """The local development Alertmanager could not be installed, started or stopped."""


class NotFittedError(ChargewatchError):
    """A detector was asked to score before ``fit`` (it never quietly fits on what it scores)."""
