"""Connector usage a quarter hour at a time: what each session did in each quarter hour it spans.

The detection job cuts every judged session into *pieces*, one per UTC quarter hour it overlaps,
and stores them as measurement ``usage`` (``usage_lines``): connector-seconds occupied (the
session open), charging (power flowing) and idle after full (the car done, still plugged in), and
the energy the meter register counted. Usage figures over weeks then come from InfluxDB summing
a few points per session (``GROUP BY time(15m)``), never from the raw readings again.

Quarter hours, because every UTC offset in use is a whole number of quarter hours (India +5:30,
Nepal +5:45, Chatham +12:45): a quarter hour of UTC always falls within one local hour, so
hours of week come out exactly in any zone.

Within a piece the segments are those of ``analytics.profiles.segments`` (each sample's interval
takes the sample's state, capped at ``MAX_INTERVAL_S``), so a session's pieces add up to its
profile; a register increase between two readings is spread evenly over the time between them
(a falling register adds nothing). A session occupies its connector from its start to its stop,
or to its last reading while open, at most ``MAX_SESSION_NS`` and never past the judged window's
end (a clock years ahead must not make years of pieces).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, ObjectArray, SessionBatch
from analytics.profiles import segments
from chargewatch.influx import format_point

__all__ = [
    "MAX_SESSION_NS",
    "PIECE_NS",
    "USAGE_MEASUREMENT",
    "Pieces",
    "usage_lines",
    "usage_pieces",
]

USAGE_MEASUREMENT = "usage"
PIECE_NS = 15 * 60 * 1_000_000_000
MAX_SESSION_NS = 48 * 3600 * 1_000_000_000  # as analytics.window's session look-back
_NS = 1e9
_MS_NS = 1_000_000


@dataclass(frozen=True, slots=True, eq=False)
class Pieces:
    """One row per (session, quarter hour it overlaps); arrays of shape ``(p,)``."""

    session_id: ObjectArray
    station_id: ObjectArray
    connector_id: IntArray
    start_ns: IntArray  # the piece's start: the quarter hour's, or the session's if later
    occupied_s: FloatArray
    charging_s: FloatArray
    idle_after_full_s: FloatArray
    energy_wh: FloatArray

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])


def usage_pieces(batch: SessionBatch, *, until_ns: int) -> Pieces:
    """The pieces of every session of ``batch`` (orphan segments have none), none past
    ``until_ns`` (the judged window's end)."""
    sessions = batch.take(np.array([sid is not None for sid in batch.session_id], dtype=bool))
    n, m = sessions.n_sessions, sessions.n_steps
    start = sessions.start_ns
    rows = np.arange(n)
    has = sessions.n_samples > 0
    last_t = sessions.t_ns[rows, np.maximum(sessions.n_samples - 1, 0)] if m else start
    end = np.where(sessions.stop_ns != NO_TIME, sessions.stop_ns, np.where(has, last_t, start))
    end = np.clip(end, start, np.minimum(start + MAX_SESSION_NS, until_ns))
    end = np.maximum(end, start)

    first = start // PIECE_NS
    count = np.where(end > start, (end - 1) // PIECE_NS - first + 1, 0)
    row = np.repeat(rows, count)
    k = np.arange(row.size) - np.repeat(np.cumsum(count) - count, count)
    quarter = (first[row] + k) * PIECE_NS
    piece_start = np.maximum(start[row], quarter)
    piece_end = np.minimum(end[row], quarter + PIECE_NS)
    rel_a = (piece_start - start[row]) / _NS
    rel_b = (piece_end - start[row]) / _NS

    charging = idle = energy = np.zeros(row.size)
    if m and row.size:
        dur = (end - start) / _NS
        rel_t = np.where(sessions.valid, (sessions.t_ns - start[:, None]) / _NS, dur[:, None])
        seg = segments(sessions)
        knots = {
            "charging": _segment_knots(rel_t, seg.dt_s, seg.charging, dur),
            "idle": _segment_knots(rel_t, seg.dt_s, seg.idle, dur),
            "energy": _register_knots(
                rel_t, np.where(sessions.valid, sessions.energy_wh, np.nan), dur
            ),
        }
        charging, idle, energy = (_between(x, y, dur, row, rel_a, rel_b) for x, y in knots.values())
    return Pieces(
        session_id=sessions.session_id[row],
        station_id=sessions.station_id[row],
        connector_id=sessions.connector_id[row],
        start_ns=piece_start,
        occupied_s=(piece_end - piece_start) / _NS,
        charging_s=charging,
        idle_after_full_s=idle,
        energy_wh=energy,
    )


def _knots(
    a_raw: FloatArray, b_raw: FloatArray, amount: FloatArray, dur_s: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Knots of a cumulative amount, per row: each ``amount`` accrues evenly over
    ``[a_raw, b_raw)`` (at once when that is an instant), and only its share within the session
    ``[0, dur_s]`` counts. The intervals of a row follow one another in time."""
    n = a_raw.shape[0]
    a = np.clip(a_raw, 0.0, dur_s[:, None])
    b = np.clip(b_raw, 0.0, dur_s[:, None])
    length = b_raw - a_raw
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = np.where(length > 0, (b - a) / np.where(length > 0, length, 1.0), a_raw == a)
    rise = amount * inside
    after = np.cumsum(rise, axis=1)
    x = np.stack([a, b], axis=2).reshape(n, -1)
    y = np.stack([after - rise, after], axis=2).reshape(n, -1)
    return x, y


def _segment_knots(
    rel_t: FloatArray, dt_s: FloatArray, mask: BoolArray, dur_s: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Cumulative time in ``mask``'s segment: each masked sample's interval counts whole."""
    return _knots(rel_t, rel_t + dt_s, np.where(mask, dt_s, 0.0), dur_s)


def _register_knots(
    rel_t: FloatArray, register_wh: FloatArray, dur_s: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Cumulative register rise: each rise between consecutive readings that have a register
    value spreads evenly over the time between them; a fall adds nothing."""
    finite = np.isfinite(register_wh)
    order = np.argsort(~finite, axis=1, kind="stable")  # readings with a register first, in order
    t = np.take_along_axis(rel_t, order, axis=1)
    e = np.take_along_axis(register_wh, order, axis=1)
    kept = np.take_along_axis(finite, order, axis=1)
    t = np.where(kept, t, dur_s[:, None])
    pair = kept[:, 1:] & kept[:, :-1]
    rise = np.where(pair, np.maximum(np.nan_to_num(np.diff(e, axis=1)), 0.0), 0.0)
    return _knots(t[:, :-1], t[:, 1:], rise, dur_s)


def _between(
    x: FloatArray, y: FloatArray, dur_s: FloatArray, row: IntArray, a: FloatArray, b: FloatArray
) -> FloatArray:
    """``F(b) - F(a)`` for each piece, ``F`` its row's piecewise-linear function through the knots
    ``(x, y)`` (non-decreasing in ``x``, within ``[0, dur_s]``). One ``np.interp`` for all rows:
    each row's knots are shifted into a band of its own, and framed by ``(0, 0)`` and
    ``(dur, last)`` so that no piece reads a neighbour's."""
    n = x.shape[0]
    last = y[:, -1:] if y.shape[1] else np.zeros((n, 1))  # rows of one reading have no knot
    x = np.concatenate([np.zeros((n, 1)), x, dur_s[:, None]], axis=1)
    y = np.concatenate([np.zeros((n, 1)), y, last], axis=1)
    band = float(dur_s.max(initial=0.0)) + 1.0
    offset = np.arange(n) * band
    xp, fp = (x + offset[:, None]).ravel(), y.ravel()
    shift = offset[row]
    return np.asarray(np.interp(b + shift, xp, fp) - np.interp(a + shift, xp, fp))


def _point_times(pieces: Pieces) -> IntArray:
    """A piece's point time: its start to the millisecond, and below that a digest of its
    session, so that two sessions wrongly open at once on one connector keep a point each. It
    stays within the piece's quarter hour (quarter hours start on a millisecond)."""
    digests = {sid: zlib.crc32(str(sid).encode()) % _MS_NS for sid in set(pieces.session_id)}
    below = np.fromiter((digests[s] for s in pieces.session_id), np.int64, count=len(pieces))
    return pieces.start_ns - pieces.start_ns % _MS_NS + below


def usage_lines(pieces: Pieces) -> Iterator[str]:
    """Line protocol: measurement ``usage``, tags station/connector, one point per piece."""
    times = _point_times(pieces)
    for i in range(len(pieces)):
        yield format_point(
            USAGE_MEASUREMENT,
            {"station_id": str(pieces.station_id[i]), "connector_id": str(pieces.connector_id[i])},
            {
                "session_id": str(pieces.session_id[i]),
                "occupied_s": float(pieces.occupied_s[i]),
                "charging_s": float(pieces.charging_s[i]),
                "idle_after_full_s": float(pieces.idle_after_full_s[i]),
                "energy_wh": float(pieces.energy_wh[i]),
            },
            int(times[i]),
        )
