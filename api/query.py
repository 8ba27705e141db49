"""What every read route shares: the time window with its limit, page cursors, identifiers,
times as RFC 3339, and the error answers it documents.

The window. A read names ``since`` and ``until`` (RFC 3339 with a zone); ``until`` defaults to
now and ``since`` to a day before ``until``; a window is at most ``MAX_WINDOW_DAYS`` (31) long.
Why 31: a month is the longest period anyone reads at once (a billing period, a month of a
station's sessions), and a bound on every request is what keeps any one of them from making the
service read unbounded data, from InfluxDB above all, whose flag reads grow with the window.
Longer periods are read a window at a time; a window's rows come a page at a time (``limit``,
at most 1000, and the opaque ``cursor`` a page hands out for the next).

Every refusal names what it refuses: ``{"detail": "<parameter>: <reason>"}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Response, status
from pydantic import BaseModel, Field, WithJsonSchema

from api.deps import ReadModel, Services, unprocessable
from chargewatch.catalog import MAX_PAGE
from chargewatch.errors import EventError
from chargewatch.events import format_ts, parse_ts

__all__ = [
    "MAX_WINDOW_DAYS",
    "READ_RESPONSES",
    "Identifier",
    "JsonAnswer",
    "Page",
    "PageParams",
    "Problem",
    "Reads",
    "Utc",
    "Window",
    "WindowParams",
    "answer",
    "checked_id",
    "utc",
]

MAX_WINDOW_DAYS = 31
DEFAULT_WINDOW_NS = 24 * 3600 * 1_000_000_000
_DAY_NS = 24 * 3600 * 1_000_000_000
_MAX_ID_CHARS = 128

# RFC 3339 in UTC with milliseconds and a Z, as the project writes times.
Utc = Annotated[
    str,
    WithJsonSchema(
        {"type": "string", "format": "date-time", "examples": ["2026-11-24T08:15:30.250Z"]}
    ),
]


def utc(ts_ns: int) -> str:
    return format_ts(ts_ns)


class JsonAnswer(Response):
    media_type = "application/json"


def answer(model: BaseModel) -> Response:
    """``model`` as the JSON answer, serialized once. Routes declare the model as their
    ``response_model`` (the document shows it) and return this: FastAPI would otherwise dump
    the model, validate the dump against the same model again and encode it (a page of 100
    sessions: 7 ms more of CPU)."""
    return JsonAnswer(content=model.__pydantic_serializer__.to_json(model))


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str = Field(description="the parameter at fault and what is wrong with it")


READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no API key, or an unknown or revoked one"},
    403: {"model": Problem, "description": "the key's role may not read this"},
    422: {"model": Problem, "description": "a parameter is invalid (the detail names it)"},
    503: {"model": Problem, "description": "InfluxDB or the state database did not answer"},
}


async def reads(svc: Services) -> ReadModel:
    if svc.reads is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the read API is not configured")
    return svc.reads


Reads = Annotated[ReadModel, Depends(reads)]


def checked_id(value: str | None, parameter: str) -> str | None:
    """An identifier as events carry them: printable, 1-128 characters."""
    if value is None:
        return None
    if not value or value.isspace():
        raise unprocessable(parameter, "must not be empty")
    if len(value) > _MAX_ID_CHARS:
        raise unprocessable(parameter, f"is longer than {_MAX_ID_CHARS} characters")
    if not value.isprintable():
        raise unprocessable(parameter, "contains control characters")
    return value


Identifier = Annotated[str | None, Query(min_length=1, max_length=_MAX_ID_CHARS)]


@dataclass(frozen=True, slots=True)
class Window:
    since_ns: int
    until_ns: int


# The times a read window may name. InfluxDB stores 1677-09-21 to 2262-04-11 (int64 ns), and
# the reads look back from a window (a station's status up to 30 days, a session's start up to
# its longest duration) and ahead (a session's stop): a window at either edge made a query
# InfluxDB refuses ("constant ... underflows int64"), answered as a retryable 503 for ever, and
# a usage grid that overflowed into a 500. No charging data predates 1971 or follows 2200.
READ_MIN_NS = 31_536_000_000_000_000  # 1971-01-01T00:00:00Z
READ_MAX_NS = 7_258_118_400_000_000_000  # 2200-01-01T00:00:00Z


def window_time(value: str | None, parameter: str) -> int | None:
    """A window bound's time in ns (None when not given), or 422 naming ``parameter``: not a
    time with a zone, or outside 1971-01-01..2200-01-01 (``READ_MIN_NS``, ``READ_MAX_NS``)."""
    if value is None:
        return None
    try:
        ns = parse_ts(value, parameter)
    except EventError as exc:
        raise unprocessable(parameter, exc.reason) from None
    if not READ_MIN_NS <= ns <= READ_MAX_NS:
        raise unprocessable(
            parameter, "must lie between 1971-01-01T00:00:00Z and 2200-01-01T00:00:00Z"
        )
    return ns


async def window_params(
    since: Annotated[
        str | None,
        Query(
            description="Window start (inclusive), RFC 3339 with a zone; a day before `until` "
            "when left out.",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            description=f"Window end (exclusive), RFC 3339 with a zone; now when left out. At "
            f"most {MAX_WINDOW_DAYS} days after `since`.",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
) -> Window:
    since_ns, until_ns = window_time(since, "since"), window_time(until, "until")
    if until_ns is None:
        until_ns = time.time_ns()
    if since_ns is None:
        since_ns = until_ns - DEFAULT_WINDOW_NS
    if until_ns <= since_ns:
        raise unprocessable("until", "must be later than since")
    if until_ns - since_ns > MAX_WINDOW_DAYS * _DAY_NS:
        days = (until_ns - since_ns) / _DAY_NS
        raise unprocessable(
            "until",
            f"the window is {days:.1f} days long; at most {MAX_WINDOW_DAYS} days per request "
            "(read a longer period a window at a time)",
        )
    return Window(since_ns, until_ns)


WindowParams = Annotated[Window, Depends(window_params)]


@dataclass(frozen=True, slots=True)
class Page:
    cursor: str | None
    limit: int


async def page_params(
    cursor: Annotated[
        str | None,
        Query(
            max_length=512,
            description="The `next_cursor` of the page before, with the same filters.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows per page.")] = 100,
) -> Page:
    return Page(cursor, limit)


PageParams = Annotated[Page, Depends(page_params)]
