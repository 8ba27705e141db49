"""Flags: one record per flagged (session, kind), and their JSON Lines and InfluxDB forms.

The JSON Lines form is CONTRACTS.md section 4, key for key and in that order. In InfluxDB a flag
is a point of measurement ``flag`` tagged by station, connector and kind, stamped with its start:
re-running detection over the same data overwrites the same points instead of adding new ones.
A stored flag that a later judgement of its session no longer holds (it was flagged while the
session was open, or before late readings arrived) is deleted by the detection window
(``analytics.window``): what is stored, and what ``query_flags``, the API and alerts read, is
always the latest verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from chargewatch.errors import EventError
from chargewatch.events import format_ts, iter_jsonl, parse_ts
from chargewatch.influx import format_point

if TYPE_CHECKING:  # the client (httpx) is loaded by what talks to InfluxDB, not by the flags
    from chargewatch.influx import InfluxClient, Series

__all__ = [
    "FLAG_MEASUREMENT",
    "Flag",
    "decode_flag",
    "encode_flag",
    "flags_from_series",
    "flags_to_lines",
    "iter_flags",
    "query_flags",
    "read_flags",
    "write_flags",
]

FLAG_MEASUREMENT = "flag"


@dataclass(frozen=True, slots=True)
class Flag:
    """One flagged (session, kind). ``session_id`` is None for an orphan segment."""

    session_id: str | None
    station_id: str
    connector_id: int
    kind: str
    score: float  # [0, 1], higher is more abnormal
    start_ns: int
    end_ns: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The CONTRACTS.md section 4 object."""
        return {
            "session_id": self.session_id,
            "station_id": self.station_id,
            "connector_id": self.connector_id,
            "kind": self.kind,
            "score": self.score,
            "start": format_ts(self.start_ns),
            "end": format_ts(self.end_ns),
            "reason": self.reason,
        }


def encode_flag(flag: Flag) -> bytes:
    """One JSON Lines line, newline included."""
    return orjson.dumps(flag.to_json()) + b"\n"


def write_flags(path: Path, flags: Iterable[Flag]) -> int:
    """Write ``flags`` as JSON Lines; returns how many were written."""
    count = 0
    with path.open("wb") as out:
        for flag in flags:
            out.write(encode_flag(flag))
            count += 1
    return count


def decode_flag(obj: Any) -> Flag:
    """A flag from its decoded JSON object; ``EventError`` names the bad field."""
    if not isinstance(obj, dict):
        raise EventError(None, "a flag must be a JSON object")
    session_id = obj.get("session_id")
    if session_id is not None and not isinstance(session_id, str):
        raise EventError("session_id", "must be a string or null")
    station_id, kind, reason = obj.get("station_id"), obj.get("kind"), obj.get("reason", "")
    for name, value in (("station_id", station_id), ("kind", kind), ("reason", reason)):
        if not isinstance(value, str):
            raise EventError(name, "must be a string")
    connector_id, score = obj.get("connector_id"), obj.get("score")
    if isinstance(connector_id, bool) or not isinstance(connector_id, int):
        raise EventError("connector_id", "must be an integer")
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        raise EventError("score", "must be a number in [0, 1]")
    return Flag(
        session_id=session_id,
        station_id=str(station_id),
        connector_id=connector_id,
        kind=str(kind),
        score=float(score),
        start_ns=parse_ts(obj.get("start"), "start"),
        end_ns=parse_ts(obj.get("end"), "end"),
        reason=str(reason),
    )


def iter_flags(stream: IO[bytes]) -> Iterator[tuple[int, Flag]]:
    """``(line_number, flag)`` for each line; ``EventError`` says which line is bad."""
    for number, line in iter_jsonl(stream):
        try:
            yield number, decode_flag(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise EventError(None, f"line {number}: not valid JSON ({exc.msg})") from None
        except EventError as exc:
            raise EventError(exc.field, f"line {number}: {exc.reason}") from None


def read_flags(path: Path) -> list[Flag]:
    """Every flag of a JSON Lines file (labels read the same way: see ``evaluate``)."""
    with path.open("rb") as stream:
        return [flag for _number, flag in iter_flags(stream)]


def flags_to_lines(flags: Iterable[Flag]) -> Iterator[str]:
    """Line protocol: measurement ``flag``, tags station/connector/kind, time = the flag's start.

    Two flags of one kind on one connector share a point only if they start at the same
    nanosecond, which for two sessions on one connector does not happen.
    """
    for flag in flags:
        yield format_point(
            FLAG_MEASUREMENT,
            {
                "station_id": flag.station_id,
                "connector_id": str(flag.connector_id),
                "kind": flag.kind,
            },
            {
                "session_id": flag.session_id,
                "score": flag.score,
                "start_ns": flag.start_ns,
                "end_ns": flag.end_ns,
                # InfluxDB's JSON hands integers back as float64, exact only below 2**53: the
                # start comes back exactly as the point's time, the end as start + duration.
                "duration_ns": flag.end_ns - flag.start_ns,
                "reason": flag.reason,
            },
            flag.start_ns,
        )


def flags_from_series(series: Sequence[Series], *, sort: bool = True) -> list[Flag]:
    """Flags from ``SELECT * FROM flag ...`` with ``epoch=ns`` (tags grouped or as columns),
    ordered by start, station, connector and kind; in the answer's order with ``sort=False``."""
    flags: list[Flag] = []
    for s in series:
        cols = s.columns
        n = len(s)
        tag_columns = {
            name: [s.tags[name]] * n if name in s.tags else [str(v) for v in cols[name]]
            for name in ("station_id", "connector_id", "kind")
        }
        sessions = cols["session_id"] if "session_id" in cols else [None] * n
        for i in range(n):
            session = sessions[i]
            flags.append(
                Flag(
                    # a series of orphan flags only has no session_id: NaN, not a string
                    session_id=session if isinstance(session, str) else None,
                    station_id=tag_columns["station_id"][i],
                    connector_id=int(tag_columns["connector_id"][i]),
                    kind=tag_columns["kind"][i],
                    score=float(cols["score"][i]),
                    start_ns=int(cols["time"][i]),
                    end_ns=int(cols["time"][i]) + int(cols["duration_ns"][i]),
                    reason=str(cols["reason"][i]),
                )
            )
    if sort:
        flags.sort(key=lambda f: (f.start_ns, f.station_id, f.connector_id, f.kind))
    return flags


def query_flags(client: InfluxClient, since_ns: int, until_ns: int) -> list[Flag]:
    """The stored flags that start in ``[since, until)``, ordered by start."""
    from chargewatch.influx import quote_ident

    query = (
        f"SELECT * FROM {quote_ident(FLAG_MEASUREMENT)} "
        f"WHERE time >= {since_ns} AND time < {until_ns} "
        'GROUP BY "station_id", "connector_id", "kind"'
    )
    return flags_from_series(client.query(query))
