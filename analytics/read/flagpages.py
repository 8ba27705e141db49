"""Stored flags (InfluxDB measurement ``flag``) a page at a time, filtered by tags and fields.

``chargewatch.flags.query_flags`` reads a whole window; the API pages through one instead.
Points come in time order (InfluxDB orders points of one time by series, the same way each
time), ``LIMIT`` past the last page's end. The cursor holds the last time handed out and how
many points of that time were: the next page starts at that time and skips them, so points
that share a nanosecond are neither lost nor repeated across pages.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

from chargewatch.catalog import MAX_PAGE, CursorError
from chargewatch.flags import FLAG_MEASUREMENT, flags_from_series
from chargewatch.influx import InfluxClient, quote_ident, quote_literal
from chargewatch.readmodel import FlagPage

__all__ = ["query_flag_page"]

_ORDER = "flags"


def query_flag_page(
    client: InfluxClient,
    *,
    since_ns: int,
    until_ns: int,
    station_id: str | None = None,
    connector_id: int | None = None,
    kinds: Sequence[str] | None = None,
    session_id: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> FlagPage:
    """The flags that start in ``[since_ns, until_ns)`` and match every filter, oldest first,
    at most ``limit`` (capped at ``MAX_PAGE``); ``after`` a cursor of the page before."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    size = min(limit, MAX_PAGE)
    begin, skip = (since_ns, 0) if after is None else _decode(after)
    begin = max(begin, since_ns)
    where = [f"time >= {begin}", f"time < {until_ns}"]
    if station_id is not None:
        where.append(f"station_id = {quote_literal(station_id)}")
    if connector_id is not None:
        where.append(f"connector_id = '{connector_id}'")
    if kinds is not None:
        where.append("(" + " OR ".join(f"kind = {quote_literal(k)}" for k in kinds) + ")")
    if session_id is not None:
        where.append(f"session_id = {quote_literal(session_id)}")
    query = (
        f"SELECT * FROM {quote_ident(FLAG_MEASUREMENT)} WHERE {' AND '.join(where)} "
        f"ORDER BY time ASC LIMIT {skip + size + 1}"
    )
    # flags_from_series sorts by (start, station, connector, kind); the page keeps InfluxDB's
    # order, which the cursor counts in, and is then sorted the same way for the reader.
    found = flags_from_series(client.query(query), sort=False)[skip:]
    page = found[:size]
    cursor = None
    if len(found) > size:
        last = page[-1].start_ns
        same = sum(1 for flag in page if flag.start_ns == last)
        cursor = _encode(last, same + (skip if last == begin else 0))
    return FlagPage(flags=page, next_cursor=cursor)


def _encode(start_ns: int, skip: int) -> str:
    raw = json.dumps([_ORDER, start_ns, skip], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        order, start_ns, skip = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise CursorError("not a cursor this API handed out") from exc
    if order != _ORDER:
        raise CursorError("this cursor belongs to another listing")
    for value in (start_ns, skip):
        if isinstance(value, bool) or not isinstance(value, int):
            raise CursorError("not a cursor this API handed out")
    if not (-(2**63) <= start_ns < 2**63 and 0 <= skip <= 1_000_000):
        raise CursorError("not a cursor this API handed out")
    return start_ns, skip
