"""What the read model (``analytics.read``) hands the read API (``api``): plain values.

Both sides import these from the kernel because neither may import the other; the API turns
them into its own output schemas, so nothing here is ever returned to a client as it is.
Times are UTC nanoseconds; figures that could not be computed are None.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from chargewatch.catalog import SessionRow
from chargewatch.flags import Flag

__all__ = [
    "FlagPage",
    "ProfileGrid",
    "ProfileImage",
    "Segment",
    "SegmentKind",
    "SessionDetail",
    "TaperOnset",
]


class SegmentKind(StrEnum):
    """What a stretch of a session was (``analytics.profiles.segments``)."""

    CHARGING = "charging"
    SUSPENDED_EV = "suspended_ev"  # paused by the car
    SUSPENDED_EVSE = "suspended_evse"  # paused by the charger (or a zero offer)
    IDLE = "idle"  # plugged in after charging ended for good (full)


@dataclass(frozen=True, slots=True)
class Segment:
    kind: SegmentKind
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class TaperOnset:
    """Where power left its plateau for good."""

    time_ns: int
    offset_s: float  # since the session's start
    soc_pct: float | None


@dataclass(frozen=True, slots=True)
class SessionDetail:
    """A catalogued session with what its readings show now."""

    row: SessionRow
    segments: tuple[Segment, ...]
    taper_onset: TaperOnset | None
    readings: int  # readings of the session found in InfluxDB


@dataclass(frozen=True, slots=True)
class ProfileGrid:
    """A session's readings on a regular grid: point ``k`` is the step from
    ``row.start_ns + k * step_s``; power, offered power and state of charge are means over the
    step, energy the step's last register reading less the session's first (delivered by the
    step's end; None for a step without a register reading)."""

    row: SessionRow
    step_s: float
    power_w: tuple[float | None, ...]
    power_offered_w: tuple[float | None, ...]
    soc_pct: tuple[float | None, ...]
    energy_wh: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class ProfileImage:
    """A rendered profile: ``png`` is None when the caller's ETag still matches."""

    etag: str
    png: bytes | None
    finished: bool


@dataclass(frozen=True, slots=True)
class FlagPage:
    flags: list[Flag]
    next_cursor: str | None
