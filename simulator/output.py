"""Writing the events file in global time order without holding the whole fleet in memory, each
station's lines in the message style of its firmware.

Stations are simulated in batches; each batch is sorted and spooled to a temporary run file
whose lines start with a fixed-width sort key. The runs are then merged (a k-way merge by plain
byte comparison of those keys) into the events file, with the keys stripped.

Real stations do not all write their messages alike, and every one of these ways is valid
(CONTRACTS.md section 1): numbers as numeric strings (OCPP 1.6 sends its sampled values as
strings), clocks set to a zone other than UTC, whole-second, millisecond or microsecond stamps,
UUID or integer-like transaction ids, extra keys, a fixed but different key order, ``null`` for
what is not measured. Each station has a ``MessageStyle`` (drawn with its hardware, see
``fleet.make_station``) and its lines are rewritten in it as they are merged, so the style
changes only how the same events are written, never what they say (nor the random draws of
anything else: a fleet without variety is the same fleet, written plainly).
"""

from __future__ import annotations

import hashlib
import heapq
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .events import KEY_WIDTH, EventBuffer, format_ts_ms

_BUFFER_BYTES = 1 << 20
_RANK = slice(15, 22)  # where the station's rank sits in a run line's key (events.write_sorted)
# Keys whose values are numbers: a station that sends strings sends them all as strings.
_NUMBER_KEYS = (
    "energy_wh",
    "power_w",
    "power_offered_w",
    "current_a",
    "voltage_v",
    "soc_pct",
    "temperature_c",
    "meter_start_wh",
    "meter_stop_wh",
    "heartbeat_interval_s",
)
_READING_VALUES = _NUMBER_KEYS[:7]
SESSION_ID_STYLES = ("plain", "uuid", "integer")
# Zone offsets of station clocks, in minutes: UTC, central and eastern Europe, the US east
# coast, India (a half-hour zone).
_OFFSETS_MIN = (0, 0, 60, 120, -300, 330)


@dataclass(frozen=True, slots=True)
class MessageStyle:
    """How one station's firmware writes its messages; the default writes them as they are."""

    numbers_as_strings: bool = False  # "energy_wh": "1234.5"
    connector_as_string: bool = False  # "connector_id": "1" (valid: a numeric string)
    offset_min: int = 0  # the zone of its clock's stamps
    zulu: bool = True  # UTC written as Z (else +00:00)
    fraction_digits: int = 3  # 0 (whole seconds), 3 or 6
    session_ids: str = "plain"  # or "uuid", "integer": what its central system numbers with
    extra_keys: bool = False  # vendor keys the contract says to ignore
    nulls: bool = False  # "soc_pct": null for what it does not measure
    key_salt: int = 0  # 0: keys in the order produced; else a fixed order of its own

    @property
    def plain(self) -> bool:
        return self == PLAIN_STYLE

    def session_id(self, session_id: str) -> str:
        """The session id as this station's central system would have numbered it (the same
        simulated session always gets the same one, so labels can name it too)."""
        if self.session_ids == "plain":
            return session_id
        digest = hashlib.blake2b(session_id.encode(), digest_size=16).digest()
        if self.session_ids == "uuid":
            return str(uuid.UUID(bytes=digest, version=4))
        return str(int.from_bytes(digest[:7], "big"))  # below 2**56: unique in any fleet

    def restyle(self, line: bytes) -> bytes:
        """One JSON line (as ``EventBuffer`` writes it) rewritten in this style."""
        if self.plain:
            return line
        event: dict[str, Any] = orjson.loads(line)
        if "ts" in event:
            event["ts"] = self._stamp(event["ts"], line)
        if event.get("session_id") is not None:
            event["session_id"] = self.session_id(event["session_id"])
        if self.nulls and event["type"] == "reading":
            for key in ("session_id", *_READING_VALUES):
                event.setdefault(key, None)
        if self.numbers_as_strings:
            for key in _NUMBER_KEYS:
                value = event.get(key)
                if value is not None:
                    event[key] = str(value)  # repr of a float: it reads back exactly
        if self.connector_as_string and "connector_id" in event:
            event["connector_id"] = str(event["connector_id"])
        if self.extra_keys:
            event.update(_extras(event, line))
        if self.key_salt:
            salt = self.key_salt
            event = {k: event[k] for k in sorted(event, key=lambda k: zlib.crc32(k.encode(), salt))}
        return orjson.dumps(event)

    def _stamp(self, ts: str, line: bytes) -> str:
        """An RFC 3339 stamp in milliseconds UTC, as this station writes it."""
        moment = datetime.fromisoformat(ts)
        if self.fraction_digits > 3 and moment.microsecond:
            # a clock that resolves microseconds shows them (whole seconds stay whole)
            moment += timedelta(microseconds=zlib.crc32(line) % 1000)
        local = moment.astimezone(timezone(timedelta(minutes=self.offset_min)))
        text = local.strftime("%Y-%m-%dT%H:%M:%S")
        if self.fraction_digits:
            fraction = f"{local.microsecond:06d}"[: self.fraction_digits]
            text += "." + fraction
        if self.offset_min == 0 and self.zulu:
            return text + "Z"
        sign = "-" if self.offset_min < 0 else "+"
        hours, minutes = divmod(abs(self.offset_min), 60)
        return f"{text}{sign}{hours:02d}:{minutes:02d}"


PLAIN_STYLE = MessageStyle()


def draw_style(rng: np.random.Generator) -> MessageStyle:
    """One station's message style: each habit independently, so a fleet mixes them all."""
    offset = int(rng.choice(_OFFSETS_MIN))
    return MessageStyle(
        numbers_as_strings=bool(rng.random() < 0.3),
        connector_as_string=bool(rng.random() < 0.1),
        offset_min=offset,
        zulu=bool(rng.random() < 0.7),
        fraction_digits=int(rng.choice((0, 3, 6), p=(0.3, 0.5, 0.2))),
        session_ids=str(rng.choice(SESSION_ID_STYLES, p=(0.5, 0.3, 0.2))),
        extra_keys=bool(rng.random() < 0.3),
        nulls=bool(rng.random() < 0.3),
        key_salt=int(rng.integers(1, 2**31)) if rng.random() < 0.4 else 0,
    )


def _extras(event: dict[str, Any], line: bytes) -> dict[str, Any]:
    """Vendor keys of the kinds real firmware adds: a context, a sequence number, a nested
    object with a unit and a phase, text that is not ASCII and holds an escaped quote."""
    extras: dict[str, Any] = {"seq": zlib.crc32(line) % 100_000, "fw": "4.2.1-rc1"}
    if event["type"] == "reading":
        extras["context"] = "Sample.Periodic"
        extras["sampled"] = {"unit": "Wh", "phase": None, "location": ["Outlet", 1]}
    else:
        extras["note"] = 'Ladesäule "Süd"'
    return extras


def plain_event(event: dict[str, Any]) -> dict[str, Any]:
    """An event of any style with its numbers as JSON numbers and without nulls, for consumers
    that build typed protocol messages from the file (the live replayer)."""
    out: dict[str, Any] = {}
    for key, value in event.items():
        if value is None:
            continue
        if isinstance(value, str) and (key in _NUMBER_KEYS or key == "connector_id"):
            number = float(value)
            value = int(number) if key == "connector_id" or number.is_integer() else number
        out[key] = value
    return out


class SortedRuns:
    """Sorted runs of keyed lines in a temporary directory. ``styles`` holds each station's
    message style by its rank (the station's place in the order of station ids)."""

    def __init__(self, directory: Path, styles: Iterable[MessageStyle] = ()) -> None:
        self.directory = directory
        self.paths: list[Path] = []
        self._restyle: list[Callable[[bytes], bytes] | None] = [
            None if style.plain else style.restyle for style in styles
        ]

    def write_run(self, buffer: EventBuffer) -> None:
        if not len(buffer):
            return
        path = self.directory / f"run-{len(self.paths):05d}.jsonl"
        with path.open("wb", buffering=_BUFFER_BYTES) as out:
            buffer.write_sorted(out)
        self.paths.append(path)

    def merge_into(self, target: Path) -> int:
        """Merge all runs into ``target``, each line in its station's style; returns the number
        of lines written."""
        count = 0
        restyles = self._restyle
        with ExitStack() as stack, target.open("wb", buffering=_BUFFER_BYTES) as out:
            runs = [stack.enter_context(p.open("rb", buffering=_BUFFER_BYTES)) for p in self.paths]
            for line in heapq.merge(*runs):
                rank = int(line[_RANK])
                restyle = restyles[rank] if rank < len(restyles) else None
                if restyle is None:
                    out.write(line[KEY_WIDTH:])
                else:
                    out.write(restyle(line[KEY_WIDTH:-1]))
                    out.write(b"\n")
                count += 1
        return count


def write_labels(
    path: Path,
    labels: Iterable[dict[str, Any]],
    styles: Mapping[str, MessageStyle] | None = None,
) -> int:
    """Labels as JSON Lines (CONTRACTS.md section 2), ordered by start, station, connector.
    Session ids are the ones the events carry (``styles``: each station's, by station id);
    times stay RFC 3339 UTC with milliseconds."""
    rows = sorted(
        labels,
        key=lambda x: (
            x["start_ms"],
            x["station_id"],
            x["connector_id"],
            x["kind"],
            x["session_id"] or "",
        ),
    )
    styles = styles or {}
    with path.open("wb") as out:
        for row in rows:
            session_id = row["session_id"]
            if session_id is not None:
                session_id = styles.get(row["station_id"], PLAIN_STYLE).session_id(session_id)
            out.write(
                orjson.dumps(
                    {
                        "session_id": session_id,
                        "station_id": row["station_id"],
                        "connector_id": row["connector_id"],
                        "kind": row["kind"],
                        "start": format_ts_ms(row["start_ms"]),
                        "end": format_ts_ms(row["end_ms"]),
                    }
                )
            )
            out.write(b"\n")
    return len(rows)
