"""What a simulation run is asked to do, and what it reports back."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from chargewatch.events import EventType
from chargewatch.kinds import AnomalyKind

# The kinds and event types the simulator writes, as the kernel names them. Kinds are drawn in
# this order (part of what a seed writes); each has its injector in ``injectors.INJECTORS``.
ANOMALY_KINDS: tuple[AnomalyKind, ...] = tuple(AnomalyKind)
# Station liveness (``station``) is the gateway's record of a link, which a file fleet has none of.
EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType if t is not EventType.STATION)


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """A fleet to simulate: how many stations, for how long, from which seed and start time."""

    stations: int
    hours: float
    seed: int
    start: datetime  # tz-aware; converted to UTC
    anomaly_rate: float = 0.05  # fraction of sessions that get one injected anomaly
    # stations write their messages each in their own valid style (simulator/output.py) and
    # some upload what they buffered during a lost link after the session stopped (link.py);
    # False writes every line plainly and in time (the same events, labels and physics)
    message_variety: bool = True
    # True: a session still charging when the run ends is stopped just before the end (a
    # StopTransaction), so the file holds no open session. A demo of one past day wants this:
    # open sessions of yesterday would read as a day of missing readings against today's data.
    close_at_end: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stations, bool) or not isinstance(self.stations, int):
            raise ValueError("stations must be a whole number of stations.")
        if self.stations < 1:
            raise ValueError(f"stations must be at least 1, got {self.stations}.")
        if not math.isfinite(self.hours) or self.hours <= 0:
            raise ValueError(f"hours must be a positive number, got {self.hours}.")
        if not math.isfinite(self.anomaly_rate) or not 0.0 <= self.anomaly_rate <= 1.0:
            raise ValueError(f"anomaly_rate must lie between 0 and 1, got {self.anomaly_rate}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative whole number, got {self.seed!r}.")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must carry a time zone (for example 2026-11-23T00:00:00Z).")

    @property
    def start_ms(self) -> int:
        """Start as milliseconds since the Unix epoch (UTC)."""
        delta = self.start.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        return delta // timedelta(milliseconds=1)

    @property
    def end_ms(self) -> int:
        return self.start_ms + round(self.hours * 3_600_000)


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    """Counts of what a run wrote."""

    events: int  # lines written to the events file
    events_by_type: dict[str, int]  # reading, session_start, session_stop, status, authorize
    sessions: int
    labels_by_kind: dict[str, int]


def make_rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent, reproducible random stream for one purpose (and one station).

    Streams are keyed rather than drawn in sequence, so what one station draws does not depend
    on how much another one drew before it.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=stream)))
