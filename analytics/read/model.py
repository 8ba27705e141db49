"""The read model behind the read API: sessions from the catalogue, what their readings show,
their profile on a grid and as a picture, flags and scores.

Session rows and flags are read on every request. What a finished session's readings show (its
detail, its profile grid, its picture) is kept in memory (``AnswerCache``: least recently used
out past ``answer_cache_bytes``) by the session and its catalogue row's version (``updated_at``,
new at every judgement) and the request's parameters, for at most ``ANSWER_TTL_S``: a repeated
request (the panels of a dashboard showing one session, each refresh, a person clicking back)
then costs a catalogue lookup, not an InfluxDB query, a computation and a drawing. A new
judgement makes a new key at once; readings that reach InfluxDB after a finished session's last
judgement (a station's buffer sent after an outage) show once its entry expires. Open sessions
are never kept: their readings change every minute.

A PNG's ETag is a digest of everything it is drawn from (the catalogue row as judged, every
reading and status read, the size, the plot's version), so a client's copy is refused once any
of it changes.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Sequence
from typing import Any, TypeVar

import numpy as np

from analytics.batch import SessionBatch
from analytics.plots import PLOT_VERSION, render_profile_png
from analytics.profiles import Segments, resample, segments, taper_onset
from analytics.read.flagpages import query_flag_page
from analytics.read.readings import (
    PROFILE_FIELDS,
    SEGMENT_FIELDS,
    SessionReadings,
    read_session,
)
from chargewatch import catalog
from chargewatch.catalog import SessionRow
from chargewatch.influx import InfluxClient
from chargewatch.readmodel import (
    FlagPage,
    ProfileGrid,
    ProfileImage,
    Segment,
    SegmentKind,
    SessionDetail,
    TaperOnset,
)
from chargewatch.state import StateStore

__all__ = [
    "ANSWER_TTL_S",
    "DEFAULT_STEP_S",
    "MAX_GRID_STEPS",
    "AnswerCache",
    "ReadModel",
    "grid_step_s",
]

DEFAULT_STEP_S = 60.0
MAX_GRID_STEPS = 1440  # a day at a minute; a longer session gets a coarser step
# How long a finished session's answers are kept: the most a reading that arrives after the
# session's last judgement stays unseen. A minute, as the OCPP liveness sampling and the usual
# dashboard refresh: a dashboard's panels and a person going back and forth hit it, and what
# operations see is never more than a refresh behind what InfluxDB holds.
ANSWER_TTL_S = 60.0
# What an entry's Python objects cost beyond its figures (the row, tuples, the key): an estimate
# that keeps the byte bound honest for small entries.
_ENTRY_OVERHEAD_BYTES = 2048
_FLOAT_BYTES = 32  # a float in a tuple: the object and its slot
_T = TypeVar("_T")
_NS = 1_000_000_000
# The order of segments() masks, as codes 1..4 (0: no segment, e.g. padding).
_SEGMENT_ORDER = (
    SegmentKind.CHARGING,
    SegmentKind.SUSPENDED_EVSE,
    SegmentKind.SUSPENDED_EV,
    SegmentKind.IDLE,
)


def grid_step_s(span_s: float, requested_s: float | None) -> float:
    """The step of a profile's grid: the one asked for (a minute by default), made coarser
    (whole seconds) when the session would need more than ``MAX_GRID_STEPS`` of it."""
    step = DEFAULT_STEP_S if requested_s is None else requested_s
    return float(max(step, math.ceil(max(span_s, 0.0) / (MAX_GRID_STEPS - 1))))


class AnswerCache:
    """Values by key, each for at most ``ttl_s``, least recently used first out past
    ``max_bytes`` (the sizes the callers state). Thread-safe."""

    def __init__(
        self, max_bytes: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._clock = clock
        # key -> (expires at, size, value)
        self._items: OrderedDict[Hashable, tuple[float, int, Any]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            if found[0] <= self._clock():
                del self._items[key]
                self._bytes -= found[1]
                return None
            self._items.move_to_end(key)
            return found[2]

    def put(self, key: Hashable, value: object, size: int) -> None:
        if size > self._max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (self._clock() + self._ttl_s, size, value)
            self._bytes += size
            while self._bytes > self._max_bytes:
                _, (_, dropped, _) = self._items.popitem(last=False)
                self._bytes -= dropped

    def __len__(self) -> int:
        return len(self._items)


class ReadModel:
    """What ``api``'s read routes need (``api.deps.ReadModel``), over InfluxDB and the state
    database. Safe to share between threads (InfluxDB's client and the engine are)."""

    def __init__(
        self,
        client: InfluxClient,
        state: StateStore,
        *,
        answer_cache_bytes: int = 64 * 2**20,
        answer_ttl_s: float = ANSWER_TTL_S,
    ) -> None:
        self._client = client
        self._state = state
        self._answers = AnswerCache(answer_cache_bytes, answer_ttl_s)

    def _kept(
        self,
        row: SessionRow,
        what: tuple[Hashable, ...],
        make: Callable[[], _T],
        size: Callable[[_T], int],
    ) -> _T:
        """``make()``'s answer about ``row``'s session, kept while the session is finished
        and judged as ``row`` is (module docstring)."""
        if row.stop_ns is None:
            return make()
        key = (row.session_id, row.updated_at_ns, *what)
        found: _T | None = self._answers.get(key)
        if found is None:
            found = make()
            self._answers.put(key, found, size(found))
        return found

    # -- the catalogue --------------------------------------------------------------------------

    def sessions(
        self,
        *,
        since_ns: int,
        until_ns: int,
        station_id: str | None,
        connector_id: int | None,
        pseudonym: str | None,
        kinds: Sequence[str] | None,
        flagged_only: bool,
        after: str | None,
        limit: int,
    ) -> tuple[list[SessionRow], str | None]:
        return catalog.list_sessions(
            self._state,
            station_id=station_id,
            connector_id=connector_id,
            since_ns=since_ns,
            until_ns=until_ns,
            pseudonym=pseudonym,
            kinds=kinds,
            flagged_only=flagged_only,
            after=after,
            limit=limit,
        )

    def ranked(
        self,
        kind: str,
        *,
        since_ns: int,
        until_ns: int,
        station_id: str | None,
        connector_id: int | None,
        min_score: float | None,
        after: str | None,
        limit: int,
    ) -> tuple[list[SessionRow], str | None]:
        return catalog.rank_sessions(
            self._state,
            kind,
            station_id=station_id,
            connector_id=connector_id,
            since_ns=since_ns,
            until_ns=until_ns,
            min_score=min_score,
            after=after,
            limit=limit,
        )

    def session_row(self, session_id: str) -> SessionRow | None:
        return catalog.get_session(self._state, session_id)

    # -- one session and its readings -------------------------------------------------------------

    def session(self, session_id: str) -> SessionDetail | None:
        row = catalog.get_session(self._state, session_id)
        if row is None:
            return None
        return self._kept(
            row,
            ("detail",),
            lambda: self._detail(row),
            lambda d: _ENTRY_OVERHEAD_BYTES + 256 * len(d.segments),
        )

    def _detail(self, row: SessionRow) -> SessionDetail:
        readings = read_session(self._client, row, SEGMENT_FIELDS)
        if readings.count == 0:
            return SessionDetail(row=row, segments=(), taper_onset=None, readings=0)
        seg = segments(readings.batch)
        return SessionDetail(
            row=row,
            segments=_ranges(readings.batch, seg),
            taper_onset=_taper(readings.batch, seg),
            readings=readings.count,
        )

    def profile(self, session_id: str, *, step_s: float | None) -> ProfileGrid | None:
        row = catalog.get_session(self._state, session_id)
        if row is None:
            return None
        # kept by the step the grid will have, not the one asked for: asked for steps finer
        # than a long session allows all give one grid, read once
        step = grid_step_s(row.duration_s, step_s)
        return self._kept(
            row,
            ("profile", step),
            lambda: _grid(row, read_session(self._client, row, PROFILE_FIELDS), step),
            lambda g: _ENTRY_OVERHEAD_BYTES + 4 * _FLOAT_BYTES * len(g.power_w),
        )

    def profile_png(
        self,
        session_id: str,
        *,
        step_s: float | None,
        width_px: int,
        height_px: int,
        if_none_match: Collection[str] = (),
    ) -> ProfileImage | None:
        """The profile as a PNG; ``png`` None when its ETag is in ``if_none_match``."""
        row = catalog.get_session(self._state, session_id)
        if row is None:
            return None
        finished = row.stop_ns is not None
        cached: tuple[str, bytes] | None = None
        step_s = grid_step_s(row.duration_s, step_s)  # as ``profile`` keeps it
        key = (row.session_id, row.updated_at_ns, "png", step_s, width_px, height_px)
        if finished:
            cached = self._answers.get(key)
        if cached is None:
            readings = read_session(self._client, row, PROFILE_FIELDS)
            tag = hashlib.blake2b(digest_size=16)
            tag.update(f"{PLOT_VERSION}|{width_px}x{height_px}|{step_s}|{row!r}".encode())
            tag.update(readings.digest.encode())
            etag = tag.hexdigest()
            if etag in if_none_match:  # the client's copy holds: nothing to draw
                return ProfileImage(etag=etag, png=None, finished=finished)
            png = render_profile_png(
                _grid(row, readings, step_s),
                _segments(readings),
                width_px=width_px,
                height_px=height_px,
            )
            cached = (etag, png)
            if finished:
                self._answers.put(key, cached, _ENTRY_OVERHEAD_BYTES + len(png))
        etag, png = cached
        if etag in if_none_match:
            return ProfileImage(etag=etag, png=None, finished=finished)
        return ProfileImage(etag=etag, png=png, finished=finished)

    # -- flags ----------------------------------------------------------------------------------

    def flags(
        self,
        *,
        since_ns: int,
        until_ns: int,
        station_id: str | None,
        connector_id: int | None,
        kinds: Sequence[str] | None,
        session_id: str | None,
        after: str | None,
        limit: int,
    ) -> FlagPage:
        return query_flag_page(
            self._client,
            since_ns=since_ns,
            until_ns=until_ns,
            station_id=station_id,
            connector_id=connector_id,
            kinds=kinds,
            session_id=session_id,
            after=after,
            limit=limit,
        )


def _segments(readings: SessionReadings) -> tuple[Segment, ...]:
    if readings.count == 0:
        return ()
    return _ranges(readings.batch, segments(readings.batch))


def _ranges(batch: SessionBatch, seg: Segments) -> tuple[Segment, ...]:
    """The session's segments as time ranges: runs of sample intervals of one kind that follow
    each other without a gap (an interval is capped at ``MAX_INTERVAL_S``, so a long silence
    splits a run)."""
    code = np.zeros(batch.n_steps, dtype=np.int8)
    for number, mask in enumerate((seg.charging, seg.suspended_evse, seg.suspended_ev, seg.idle)):
        code[mask[0]] = number + 1
    start = batch.t_ns[0]
    end = start + np.round(seg.dt_s[0] * _NS).astype(np.int64)
    keep = (code > 0) & (end > start)
    code, start, end = code[keep], start[keep], end[keep]
    if not code.size:
        return ()
    joins = (code[1:] == code[:-1]) & (start[1:] <= end[:-1])
    first = np.flatnonzero(np.concatenate([[True], ~joins]))
    last = np.concatenate([first[1:] - 1, [code.size - 1]])
    return tuple(
        Segment(kind=_SEGMENT_ORDER[int(code[a]) - 1], start_ns=int(start[a]), end_ns=int(end[b]))
        for a, b in zip(first.tolist(), last.tolist(), strict=True)
    )


def _taper(batch: SessionBatch, seg: Segments) -> TaperOnset | None:
    """Where power left its plateau for good (``analytics.profiles.taper_onset``)."""
    power = np.where(batch.valid, batch.power_w, np.nan)
    onset = int(taper_onset(power, seg.charging, seg.plateau_power_w)[0])
    if onset < 0:
        return None
    time_ns = int(batch.t_ns[0, onset])
    soc = float(batch.soc_pct[0, onset])
    return TaperOnset(
        time_ns=time_ns,
        offset_s=(time_ns - int(batch.start_ns[0])) / _NS,
        soc_pct=soc if math.isfinite(soc) else None,
    )


def _grid(row: SessionRow, readings: SessionReadings, step_s: float | None) -> ProfileGrid:
    batch = readings.batch
    span_s = row.duration_s
    if readings.count:
        span_s = max(span_s, (int(batch.t_ns[0, -1]) - row.start_ns) / _NS)
    step = grid_step_s(span_s, step_s)
    grid = resample(batch, step_s=step, max_steps=MAX_GRID_STEPS)
    return ProfileGrid(
        row=row,
        step_s=step,
        power_w=_values(grid.power_w[0]),
        power_offered_w=_values(grid.power_offered_w[0]),
        soc_pct=_values(grid.soc_pct[0]),
        energy_wh=_values(_delivered_by_step(batch, step, grid.power_w.shape[1])),
    )


def _delivered_by_step(batch: SessionBatch, step_s: float, steps: int) -> np.ndarray:
    """Energy delivered by the end of each step: the step's last register reading less the
    session's first (NaN for a step without one). Readings, not interpolation: the figures
    are the meter's own."""
    out = np.full(steps, np.nan)
    energy = batch.energy_wh[0]
    finite = np.flatnonzero(np.isfinite(energy) & batch.valid[0])
    if not finite.size:
        return out
    step = np.floor((batch.t_ns[0, finite] - batch.start_ns[0]) / _NS / step_s).astype(np.int64)
    inside = np.flatnonzero((step >= 0) & (step < steps))
    if not inside.size:
        return out
    step, picked = step[inside], finite[inside]
    last = np.flatnonzero(np.diff(step, append=step[-1] + 1))  # readings are in time order
    out[step[last]] = energy[picked[last]] - energy[finite[0]]
    return out


def _values(column: np.ndarray) -> tuple[float | None, ...]:
    return tuple(v if v == v else None for v in column.tolist())  # NaN != NaN
