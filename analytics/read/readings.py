"""One catalogued session's readings from InfluxDB, as a one-row ``SessionBatch``.

The session comes from the catalogue (never found by scanning InfluxDB, where its id is a
field); its readings are read by its station and connector tags and its time range, bounded on
both ends: from its start to its stop, or, while it is open, to ``MAX_SESSION_NS`` after its
start (the detection job's look-back: no session is expected to last longer). The status in
force at each sample comes from the connector's statuses from a day before the start. One
request carries both statements. A session of more than ``MAX_SESSION_READINGS`` readings is
read again summed up into buckets of time, so a read's memory is bounded.

Only the fields a route shows or computes from are read (``SEGMENT_FIELDS``, ``PROFILE_FIELDS``):
current, voltage and temperature appear in no answer, and every field costs InfluxDB a column to
read and the client one to parse; the batch holds NaN for a field not read. (A reading that
carries none of the fields read is then not seen at all: it had nothing these routes show.)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analytics.assemble import status_lookup
from analytics.batch import NO_TIME, SessionBatch, StatusCode
from analytics.read.partition import SESSION_LOOKBACK_NS
from chargewatch.catalog import SessionRow
from chargewatch.events import ChargePointStatus, EventType
from chargewatch.influx import InfluxClient, Series, quote_ident, quote_literal
from chargewatch.schema import READING_FIELDS

__all__ = [
    "MAX_SESSION_NS",
    "MAX_SESSION_READINGS",
    "PROFILE_FIELDS",
    "SEGMENT_FIELDS",
    "SessionReadings",
    "read_session",
]

MAX_SESSION_NS = SESSION_LOOKBACK_NS
# A session's readings read as they are, at most; one with more (5 days read every 10 s, or a
# station that floods one transaction) is read summed up into buckets of time by InfluxDB
# (``_downsampled``), about DOWNSAMPLED_READINGS of them: a read costs bounded memory, whatever
# a station sent (a million readings took 300 MB a request; a profile shows 1440 steps at most).
# Statuses in force are read up to MAX_STATUSES (later ones are then not seen).
MAX_SESSION_READINGS = 50_000
DOWNSAMPLED_READINGS = 20_000
MAX_STATUSES = 50_000
_STATUS_LOOKBACK_NS = 24 * 3600 * 1_000_000_000
_STATUS_CODE = {status.value: int(StatusCode[status.name]) for status in ChargePointStatus}
# What segments and the taper onset read (``analytics.profiles``): power, the offer (a pause
# by the charger) and the state of charge at the onset; the statuses come with every read.
SEGMENT_FIELDS: tuple[str, ...] = ("power_w", "power_offered_w", "soc_pct")
# What the profile grid and its picture show: the same and the register's energy.
PROFILE_FIELDS: tuple[str, ...] = ("energy_wh", *SEGMENT_FIELDS)


@dataclass(frozen=True, slots=True, eq=False)
class SessionReadings:
    """A session's readings as a one-row batch, and a digest of everything read (for ETags)."""

    batch: SessionBatch
    digest: str

    @property
    def count(self) -> int:
        return int(self.batch.n_samples[0])


def time_range(row: SessionRow) -> tuple[int, int]:
    """The session's readings lie in ``[start, end]``: to its stop, or while open, to the
    longest a session is expected to last."""
    end = row.stop_ns if row.stop_ns is not None else row.start_ns + MAX_SESSION_NS
    return row.start_ns, max(end, row.start_ns)


def read_session(
    client: InfluxClient, row: SessionRow, fields: Sequence[str] = READING_FIELDS
) -> SessionReadings:
    """The readings of ``row``'s session (those carrying its id, on its connector, in its time
    range), their ``fields`` (of ``READING_FIELDS``), and the statuses in force at them."""
    unknown = set(fields) - set(READING_FIELDS)
    if unknown or not fields:
        raise ValueError(f"fields: not reading fields: {sorted(unknown) or 'none given'}")
    start, end = time_range(row)
    series = f"station_id = {quote_literal(row.station_id)} AND connector_id = '{row.connector_id}'"
    chosen = [name for name in READING_FIELDS if name in fields]
    selected = ", ".join(quote_ident(name) for name in chosen)
    where = (
        f"WHERE {series} AND session_id = {quote_literal(row.session_id)} "
        f"AND time >= {start} AND time <= {end}"
    )
    readings = (
        f"SELECT {selected} FROM {quote_ident(EventType.READING)} {where} "
        f"LIMIT {MAX_SESSION_READINGS + 1}"
    )
    statuses = (
        f"SELECT status FROM {quote_ident(EventType.STATUS)} WHERE {series} "
        f"AND time >= {start - _STATUS_LOOKBACK_NS} AND time <= {end} LIMIT {MAX_STATUSES}"
    )
    found = client.query(f"{readings}; {statuses}")
    by_name: dict[str, list[Series]] = {}
    for s in found:
        by_name.setdefault(s.name, []).append(s)
    t_ns, values = _readings(by_name.get(EventType.READING, []))
    if t_ns.size > MAX_SESSION_READINGS:
        t_ns, values = _readings(_downsampled(client, where, chosen, end - start))
    status_t, status_code = _statuses(by_name.get(EventType.STATUS, []))
    batch = _one_row(row, t_ns, values, status_t, status_code)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(t_ns.tobytes())
    digest.update(np.ascontiguousarray(values).tobytes())
    digest.update(status_t.tobytes())
    digest.update(status_code.tobytes())
    return SessionReadings(batch=batch, digest=digest.hexdigest())


def _downsampled(client: InfluxClient, where: str, chosen: list[str], span_ns: int) -> list[Series]:
    """The session's readings in ``DOWNSAMPLED_READINGS`` buckets of whole seconds at most,
    summed up in InfluxDB: the register's and the SoC's last value in each (the meter's own
    figures), the mean of the rest."""
    bucket_s = max(1, math.ceil(span_ns / 1e9 / DOWNSAMPLED_READINGS))
    last = {"energy_wh", "soc_pct"}
    selected = ", ".join(
        f"{'last' if name in last else 'mean'}({quote_ident(name)}) AS {quote_ident(name)}"
        for name in chosen
    )
    query = (
        f"SELECT {selected} FROM {quote_ident(EventType.READING)} {where} "
        f"GROUP BY time({bucket_s}s) fill(none)"
    )
    return [s for s in client.query(query) if s.name == EventType.READING]


def _readings(series: list[Series]) -> tuple[np.ndarray, np.ndarray]:
    """Times (int64, sorted) and values ``(len(READING_FIELDS), m)`` with NaN where absent."""
    if not series:
        return np.zeros(0, dtype=np.int64), np.zeros((len(READING_FIELDS), 0))
    s = series[0]  # one connector: one series
    t_ns = np.asarray(s.columns["time"], dtype=np.int64)
    values = np.full((len(READING_FIELDS), t_ns.size), np.nan)
    for j, name in enumerate(READING_FIELDS):
        column = s.columns.get(name)
        if column is not None and column.dtype.kind == "f":
            values[j] = column
    order = np.argsort(t_ns, kind="stable")
    return t_ns[order], values[:, order]


def _statuses(series: list[Series]) -> tuple[np.ndarray, np.ndarray]:
    """The connector's status changes in time order, as ``StatusCode`` values."""
    if not series or "status" not in series[0].columns:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int8)
    s = series[0]
    codes = [_STATUS_CODE.get(v, -1) if isinstance(v, str) else -1 for v in s.columns["status"]]
    code = np.asarray(codes, dtype=np.int8)
    known = code >= 0  # written by something else: not ours to guess
    t = np.asarray(s.columns["time"], dtype=np.int64)[known]
    order = np.argsort(t, kind="stable")
    return t[order], code[known][order]


def _one_row(
    row: SessionRow,
    t_ns: np.ndarray,
    values: np.ndarray,
    status_t: np.ndarray,
    status_code: np.ndarray,
) -> SessionBatch:
    m = int(t_ns.size)
    lookup = status_lookup(np.zeros(status_t.size, dtype=np.int64), status_t, status_code)
    status, since, until = lookup(np.zeros(m, dtype=np.int64), t_ns)

    def one(value: object) -> np.ndarray:
        out = np.empty(1, dtype=object)
        out[0] = value
        return out

    samples = {name: values[j][None, :].copy() for j, name in enumerate(READING_FIELDS)}
    return SessionBatch(
        session_id=one(row.session_id),
        station_id=one(row.station_id),
        connector_id=np.array([row.connector_id], dtype=np.int64),
        start_ns=np.array([row.start_ns], dtype=np.int64),
        stop_ns=np.array([NO_TIME if row.stop_ns is None else row.stop_ns], dtype=np.int64),
        id_pseudonym=one(row.id_pseudonym),
        auth_result=one(None),
        meter_start_wh=np.full(1, np.nan),
        meter_stop_wh=np.full(1, np.nan),
        stop_reason=one(None),
        n_samples=np.array([m], dtype=np.int64),
        t_ns=t_ns[None, :].copy(),
        valid=np.ones((1, m), dtype=bool),
        arrival=np.arange(m, dtype=np.int64)[None, :],
        status=status[None, :],
        status_since_ns=since[None, :],
        status_until_ns=until[None, :],
        **samples,
    )
