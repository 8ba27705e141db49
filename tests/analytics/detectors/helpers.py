"""Hand-made sessions for the detector tests: a few lines per case, padded into a SessionBatch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from analytics.batch import NO_TIME, SessionBatch, StatusCode

T0_NS = 1_795_420_800_000_000_000  # 2026-11-24T00:00:00Z
NS = 1_000_000_000
NOW_NS = T0_NS + 3 * 86_400 * NS


@dataclass(frozen=True)
class Spec:
    """One row: samples as lists (seconds from ``T0_NS + offset_s``), metadata as fields."""

    t_s: Sequence[float]
    energy_wh: Sequence[float] | None = None
    power_w: Sequence[float] | None = None
    offered_w: Sequence[float] | None = None
    soc_pct: Sequence[float] | None = None
    current_a: Sequence[float] | None = None
    voltage_v: Sequence[float] | None = None
    status: Sequence[int] | None = None
    # when each sample's status was reported and the next change after it (seconds, as t_s);
    # None: not known (0 in the batch)
    status_since_s: Sequence[float] | None = None
    status_until_s: Sequence[float] | None = None
    arrival: Sequence[int] | None = None  # default: time order
    session_id: str | None = "S1"
    station_id: str = "ST1"
    connector_id: int = 1
    offset_s: float = 0.0
    start_s: float | None = 0.0  # relative to offset; None: no start (orphan: first reading)
    stop_s: float | None = -1.0  # -1: one second after the last sample; None: still open
    id_pseudonym: str | None = "U1"
    auth_result: str | None = "Accepted"
    extra: dict[str, float] = field(default_factory=dict)


def with_(spec: Spec, **changes: object) -> Spec:
    return replace(spec, **changes)  # type: ignore[arg-type]


def charge(
    *,
    power_w: float = 7_400.0,
    minutes: float = 120.0,
    interval_s: float = 60.0,
    full_after_min: float | None = None,
    taper_min: float = 0.0,
    offered_w: float | None = None,
    register0_wh: float = 1_000_000.0,
    noise: float = 0.0,
    seed: int = 0,
    soc0_pct: float | None = None,
    battery_wh: float = 60_000.0,
    **meta: object,
) -> Spec:
    """A plain charge: constant power (after one ramp sample), optionally a linear taper over
    ``taper_min`` before ``full_after_min``, then 0 W and SuspendedEV; register integrated."""
    t = np.arange(0.0, minutes * 60.0 + 1e-9, interval_s)
    p = np.full(t.size, power_w)
    p[0] = 0.0
    status = np.full(t.size, int(StatusCode.CHARGING))
    if full_after_min is not None:
        full_s = full_after_min * 60.0
        if taper_min > 0:
            taper_start = full_s - taper_min * 60.0
            frac = np.clip((t - taper_start) / (taper_min * 60.0), 0.0, 1.0)
            p = np.where(t > taper_start, power_w * (1.0 - 0.8 * frac), p)
            p[0] = 0.0
        p[t >= full_s] = 0.0
        status[t >= full_s] = int(StatusCode.SUSPENDED_EV)
    if noise:
        rng = np.random.default_rng(seed)
        p = np.where(p > 0, p * (1.0 + noise * rng.standard_normal(t.size)), 0.0)
    energy = register0_wh + integrate_wh(t, p)
    soc = None
    if soc0_pct is not None:
        soc = list(np.minimum(soc0_pct + (energy - register0_wh) / battery_wh * 100.0, 100.0))
    return Spec(
        t_s=list(t),
        energy_wh=list(np.floor(energy)),
        power_w=list(p),
        offered_w=[offered_w if offered_w is not None else power_w] * t.size,
        soc_pct=soc,
        status=list(status),
        **meta,  # type: ignore[arg-type]
    )


def integrate_wh(t_s: np.ndarray, p_w: np.ndarray) -> np.ndarray:
    steps = 0.5 * (p_w[1:] + p_w[:-1]) * np.diff(t_s) / 3600.0
    return np.concatenate(([0.0], np.cumsum(steps)))


def make_batch(specs: Sequence[Spec]) -> SessionBatch:
    """Pad the rows into a SessionBatch (samples sorted by time, as the assembler does)."""
    n = len(specs)
    m = max([len(s.t_s) for s in specs] + [1])

    def column(get: str) -> np.ndarray:
        out = np.full((n, m), np.nan)
        for i, s in enumerate(specs):
            values = getattr(s, get)
            if values is not None:
                out[i, : len(values)] = np.asarray(values, dtype=np.float64)
        return out

    t_ns = np.zeros((n, m), dtype=np.int64)
    valid = np.zeros((n, m), dtype=bool)
    arrival = np.zeros((n, m), dtype=np.int64)
    status = np.zeros((n, m), dtype=np.int8)
    since = np.zeros((n, m), dtype=np.int64)
    until = np.zeros((n, m), dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    start = np.full(n, NO_TIME, dtype=np.int64)
    stop = np.full(n, NO_TIME, dtype=np.int64)
    for i, s in enumerate(specs):
        k = len(s.t_s)
        base = T0_NS + round(s.offset_s * NS)
        times = base + np.round(np.asarray(s.t_s, dtype=np.float64) * NS).astype(np.int64)
        t_ns[i, :k] = times
        valid[i, :k] = True
        arrival[i, :k] = np.asarray(s.arrival) if s.arrival is not None else np.arange(k)
        if s.status is not None:
            status[i, :k] = np.asarray(s.status, dtype=np.int8)
        for target, seconds in ((since, s.status_since_s), (until, s.status_until_s)):
            if seconds is not None:
                target[i, :k] = base + np.round(np.asarray(seconds, dtype=np.float64) * NS)
        count[i] = k
        if s.start_s is not None:
            start[i] = base + round(s.start_s * NS)
        elif k:
            start[i] = int(times.min())
        if s.stop_s is not None and k:
            stop[i] = int(times.max()) + NS if s.stop_s == -1.0 else base + round(s.stop_s * NS)
    names = ("energy_wh", "power_w", "offered_w", "soc_pct", "current_a", "voltage_v")
    columns = {name: column(name) for name in names}
    # the batch is sorted by time within each row, arrival kept alongside
    order = np.argsort(np.where(valid, t_ns, np.iinfo(np.int64).max), axis=1, kind="stable")

    def sort(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, order, axis=1)

    return SessionBatch(
        session_id=np.array([s.session_id for s in specs], dtype=object),
        station_id=np.array([s.station_id for s in specs], dtype=object),
        connector_id=np.array([s.connector_id for s in specs], dtype=np.int64),
        start_ns=start,
        stop_ns=stop,
        id_pseudonym=np.array([s.id_pseudonym for s in specs], dtype=object),
        auth_result=np.array([s.auth_result for s in specs], dtype=object),
        meter_start_wh=np.full(n, np.nan),
        meter_stop_wh=np.full(n, np.nan),
        stop_reason=np.full(n, None, dtype=object),
        n_samples=count,
        t_ns=sort(t_ns),
        valid=sort(valid),
        arrival=sort(arrival),
        energy_wh=sort(columns["energy_wh"]),
        power_w=sort(columns["power_w"]),
        power_offered_w=sort(columns["offered_w"]),
        current_a=sort(columns["current_a"]),
        voltage_v=sort(columns["voltage_v"]),
        soc_pct=sort(columns["soc_pct"]),
        temperature_c=np.full((n, m), np.nan),
        status=sort(status),
        status_since_ns=sort(since),
        status_until_ns=sort(until),
    )


def from_power(
    t_s: Sequence[float] | np.ndarray,
    power_w: Sequence[float] | np.ndarray,
    *,
    register0_wh: float = 1_000_000.0,
    offered_w: float | Sequence[float] | np.ndarray = 11_000.0,
    status: Sequence[int] | np.ndarray | None = None,
    **meta: object,
) -> Spec:
    """A row whose register integrates the given power exactly (then floored to 1 Wh)."""
    t = np.asarray(t_s, dtype=np.float64)
    p = np.asarray(power_w, dtype=np.float64)
    offered = np.broadcast_to(np.asarray(offered_w, dtype=np.float64), t.shape)
    st = (
        np.asarray(status)
        if status is not None
        else np.where(p > 0, int(StatusCode.CHARGING), int(StatusCode.CHARGING))
    )
    return Spec(
        t_s=list(t),
        energy_wh=list(np.floor(register0_wh + integrate_wh(t, p))),
        power_w=list(p),
        offered_w=list(offered),
        status=[int(v) for v in st],
        **meta,  # type: ignore[arg-type]
    )
