"""Backfill: detection over weeks or months of InfluxDB, as (station partition x day) tasks on Dask.

``chargewatch detect --since/--until`` judges its range as one window: every partition of
stations read whole, so memory grows with the range. A backfill cuts ``[since, until)`` at UTC
midnights into days and runs one task per (station partition, day) on a Dask cluster
(``distributed``): a local cluster of worker processes by default, or a real one by its scheduler
address. Each task opens its own InfluxDB client and state database from a ``Source`` (settings,
never live connections, travel to the workers), judges with the same vectorized detectors and the
same building blocks as the window (``analytics.window``, ``analytics.read.partition``) and stores
its results itself, so the client only counts.

Partitions are those ``detect_window`` judges (``PARTITION_STATIONS`` stations in order of id), so
a session's detectors are fitted with the same neighbours as in one process. (The scheduled job's
partitions by CRC-32, ``partition_of``, say who holds a station from one run to the next; a
backfill holds the whole range for the one run.)

Sessions are judged once and whole. A task owns the sessions that *start* in its day (the first
day also those that started earlier and stopped in the range, or are still open; the last day
those stamped after its end, a clock ahead) and the orphan segments (energy outside sessions) that
*end* in its day, as the window judges a segment once it has ended. It reads the window
``[day, read_until)``, with the window's look-back before the day (48 h of starts and stops, the
readings and orphan segments of what it owns), and a look-ahead after it: up to the last stop of
its sessions plus ``LATE_READINGS_NS`` (readings a station held while its link was down and sent
after the stop belong to the verdict), never past the range's end nor past
``SESSION_LOOKBACK_NS`` after the day (no session lasts longer: one still open then is judged
open there). The rows it reads but does not own (sessions of the day before that stop in its day,
those that start in the look-ahead) are assembled and fitted on but neither scored nor stored.

``concurrent_id_tag`` compares sessions across stations, so no partition can judge it alone. A
first phase judges it per day over the spans (starts and stops) of every station, as the window
does before its partitions: the day's owned sessions against every session that can overlap them
(those starting up to a session's length before the day and up to the look-ahead after it), and
hands each day's verdicts to that day's partition tasks, which store them with their other kinds.
Every flag of a session is thus written in one judgement, by one task.

A rerun of the same range is idempotent through what the window already guarantees: profiles,
flags and usage pieces are points keyed by station, connector (kind) and start, overwritten;
a stored flag of a judged session that the new verdict does not hold is deleted; catalogue rows
are replaced by session. Tasks that fail (InfluxDB down, a worker lost) are named by partition and
day in ``BackfillError``, after every other task has run and stored its results; running the range
again finishes it.
"""

from __future__ import annotations

import contextlib
import gc
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from analytics.batch import NO_TIME, SessionBatch
from analytics.detectors import default_detectors, fit_detectors
from analytics.detectors.base import Detector
from analytics.detectors.ratings import with_stations
from analytics.pipeline import DetectReport
from analytics.read.partition import (
    SessionEvents,
    list_stations,
    read_partition,
    read_sessions,
    read_spans,
    station_partitions,
)

# The window's own steps, shared so a backfill judges exactly as ``detect --since/--until`` does.
from analytics.window import (
    PARTITION_STATIONS,
    SESSION_LOOKBACK_NS,
    WINDOW_LOOKBACK,
    _Across,
    _assemble,
    _judge_across,
    _judge_rows,
    _Lines,
    _orphan_end,
)
from chargewatch.errors import ChargewatchError
from chargewatch.events import SessionStart, SessionStop
from chargewatch.flags import Flag
from chargewatch.influx import InfluxClient
from chargewatch.settings import Settings, influx_is_local
from chargewatch.sites import StationMetadata
from chargewatch.state import StateStore

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = [
    "LATE_READINGS_NS",
    "BackfillError",
    "BackfillProgress",
    "BackfillReport",
    "Day",
    "Source",
    "Task",
    "backfill",
    "connect",
    "local_cluster",
    "split_days",
]

_NS = 1_000_000_000
DAY_NS = 86_400 * _NS
# Readings a station kept while its link was down reach InfluxDB after the session's stop, with
# the times they were taken (OCPP stations queue transaction messages offline). A modem reset or
# a cell outage is over within hours; three of them are read past a session's stop, so what a
# station sends that long after still counts in the verdict (later ones are not waited for).
LATE_READINGS_NS = 3 * 3600 * _NS
# Failed tasks named one by one in the error; the rest are counted (a dead InfluxDB fails all).
_SHOWN_FAILURES = 5


class BackfillError(ChargewatchError):
    """Some tasks of a backfill failed; the others stored their results."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a task connects: InfluxDB and the state database by their settings. Tasks get
    this, never a live client, so any worker process (on any machine) opens its own. On a real
    cluster it travels to the scheduler and workers with the tasks, password included: use one
    on a trusted network or with TLS (``distributed``'s security settings)."""

    influx_url: str
    influx_database: str
    influx_username: str | None = None
    influx_password: str | None = field(default=None, repr=False)
    influx_timeout_s: float = 30.0
    influx_gzip: bool = False
    influx_max_retries: int = 6
    state_db_url: str | None = None  # None: no session catalogue is written

    @classmethod
    def from_settings(cls, settings: Settings, *, catalog: bool = True) -> Source:
        password = settings.influx_password
        return cls(
            influx_url=settings.influx_url,
            influx_database=settings.influx_database,
            influx_username=settings.influx_username,
            influx_password=password.get_secret_value() if password is not None else None,
            influx_timeout_s=settings.influx_timeout_s,
            influx_gzip=settings.influx_gzip
            if settings.influx_gzip is not None
            else not influx_is_local(settings),
            influx_max_retries=settings.influx_max_retries,
            state_db_url=settings.state_db_url if catalog else None,
        )

    def client(self) -> InfluxClient:
        return InfluxClient(
            url=self.influx_url,
            database=self.influx_database,
            username=self.influx_username,
            password=self.influx_password,
            timeout_s=self.influx_timeout_s,
            gzip=self.influx_gzip,
            max_retries=self.influx_max_retries,
        )


@dataclass(frozen=True, slots=True)
class Day:
    """One day of the range (UTC; the first and last may be partial), and whether it is the
    range's first or last (those own what lies before or after the range: module docstring)."""

    since_ns: int
    until_ns: int
    first: bool
    last: bool

    def owns(self, t_ns: int | np.ndarray) -> np.ndarray:
        """Whether a session starting at ``t_ns`` (or an orphan segment ending then) is this
        day's to judge."""
        t = np.asarray(t_ns, dtype=np.int64)
        after = np.ones(t.shape, dtype=bool) if self.first else t >= self.since_ns
        before = np.ones(t.shape, dtype=bool) if self.last else t < self.until_ns
        return np.asarray(after & before & (t != NO_TIME))

    @property
    def label(self) -> str:
        return datetime.fromtimestamp(self.since_ns / _NS, tz=UTC).date().isoformat()


def split_days(since_ns: int, until_ns: int) -> list[Day]:
    """``[since, until)`` cut at UTC midnights."""
    if until_ns <= since_ns:
        raise ValueError("until must be later than since")
    edges = [since_ns]
    midnight = (since_ns // DAY_NS + 1) * DAY_NS
    while midnight < until_ns:
        edges.append(midnight)
        midnight += DAY_NS
    edges.append(until_ns)
    last = len(edges) - 2
    return [
        Day(edges[i], edges[i + 1], first=i == 0, last=i == last) for i in range(len(edges) - 1)
    ]


@dataclass(frozen=True, slots=True)
class Task:
    """One (station partition, day) of a backfill."""

    partition: int
    partitions: int
    stations: tuple[str, ...]
    day: Day

    @property
    def name(self) -> str:
        first, last = self.stations[0], self.stations[-1]
        which = first if first == last else f"{first}..{last}"
        return (
            f"partition {self.partition + 1}/{self.partitions} ({which}, "
            f"{len(self.stations)} stations), day {self.day.label}"
        )


@dataclass(slots=True)
class TaskResult:
    """What a task judged and stored."""

    flags: list[Flag]
    report: DetectReport
    read_until_ns: int


@dataclass(slots=True)
class BackfillProgress:
    """Where a backfill stands, after each task."""

    tasks: int
    done: int = 0
    failed: int = 0
    sessions: int = 0
    orphan_segments: int = 0
    flags: int = 0

    def line(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"backfill: {self.done}/{self.tasks} tasks{failed}, {self.sessions} sessions, "
            f"{self.flags} flags"
        )


@dataclass(slots=True)
class BackfillReport:
    """The whole backfill: counts, every flag stored, and the tasks that failed."""

    progress: BackfillProgress
    flags: list[Flag]
    failures: list[str]
    days: int
    partitions: int
    seconds: float = 0.0
    lines: int = 0
    task_seconds: float = 0.0  # the phase-2 tasks' own time, summed over the workers

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for flag in self.flags:
            kinds[flag.kind] = kinds.get(flag.kind, 0) + 1
        named = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        p = self.progress
        return (
            f"{p.done} of {p.tasks} tasks ({self.partitions} partitions x {self.days} days): "
            f"{p.sessions} sessions and {p.orphan_segments} orphan segments scored, "
            f"{len(self.flags)} flags ({named or 'none'}), {self.seconds:.1f} s"
        )


@contextlib.contextmanager
def local_cluster(workers: int) -> Iterator[Client]:
    """A Dask cluster on this machine for the duration: ``workers`` processes of one thread
    each (the detectors are NumPy on one core; processes keep the GIL out of the way), bound to
    127.0.0.1 (the scheduler's HTTP routes too, on a free port), no dashboard, scratch files in
    a temporary folder removed afterwards."""
    import dask
    from distributed import Client, LocalCluster

    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    with (
        # the workers' statistical profiler samples every task's stack 100 times a second,
        # holding the GIL the task needs: off, as nobody reads it without the dashboard
        dask.config.set({"distributed.worker.profile.enabled": False}),
        tempfile.TemporaryDirectory(prefix="chargewatch-dask-") as scratch,
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # even without a dashboard the scheduler serves its HTTP routes (health, metrics),
            # on port 8787 unless told: another cluster there would move it, with a warning
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            local_directory=scratch,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


@contextlib.contextmanager
def connect(address: str) -> Iterator[Client]:
    """A client of the running Dask scheduler at ``address`` (``tcp://host:8786``)."""
    from distributed import Client

    try:
        client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise BackfillError(
            f"--scheduler: cannot reach the Dask scheduler at {address}: {exc}"
        ) from exc
    with client:
        yield client


def backfill(
    client: Client,
    source: Source,
    since_ns: int,
    until_ns: int,
    *,
    stations: StationMetadata | None = None,
    station_ids: Sequence[str] | None = None,
    partition_size: int = PARTITION_STATIONS,
    judged_at_ns: int | None = None,
    on_progress: Callable[[BackfillProgress], None] | None = None,
) -> BackfillReport:
    """Judge ``[since, until)`` on the Dask cluster of ``client``, (station partition x day)
    tasks (module docstring), storing what ``detect_window`` stores; the flags are returned too.
    ``station_ids``: the stations to judge (every one in InfluxDB when None). ``on_progress`` is
    called after each task. Raises ``BackfillError`` naming the tasks that failed, once every
    other one has finished."""
    from distributed import as_completed

    began = time.perf_counter()
    days = split_days(since_ns, until_ns)
    if station_ids is None:
        with source.client() as influx:
            station_ids = list_stations(influx)
    parts = station_partitions(sorted(station_ids), partition_size)
    stamp = time.time_ns() if judged_at_ns is None else judged_at_ns
    if source.state_db_url is not None:  # its tables made once, not raced for by the workers
        StateStore(source.state_db_url).close()
    span = (since_ns, until_ns)
    run = uuid.uuid4().hex[:8]  # keys of this run: a rerun must run again, not reuse results
    meta = (
        client.scatter(stations, broadcast=True)  # type: ignore[no-untyped-call]
        if stations is not None
        else None
    )
    # phase 1, per day: the cross-station kind over every station's spans
    across = {
        day: client.submit(
            _across_task, source, parts, day, span, meta, key=f"backfill-{run}-across-{day.label}"
        )
        for day in days
    }
    tasks = {
        client.submit(
            _judge_task,
            source,
            task,
            span,
            across[task.day],
            meta,
            stamp,
            key=f"backfill-{run}-{task.day.label}-p{task.partition}",
        ): task
        for task in (Task(p, len(parts), part, day) for day in days for p, part in enumerate(parts))
    }
    progress = BackfillProgress(tasks=len(tasks))
    report = BackfillReport(progress, [], [], days=len(days), partitions=len(parts))
    for future in as_completed(list(tasks)):  # type: ignore[no-untyped-call]
        task = tasks.pop(future)
        if future.status == "error":
            report.failures.append(_failure(task, future, across[task.day]))
            progress.failed += 1
        else:
            result: TaskResult = future.result()
            report.flags += result.flags
            report.lines += result.report.lines
            report.task_seconds += result.report.seconds
            progress.sessions += result.report.sessions
            progress.orphan_segments += result.report.orphan_segments
            progress.flags += len(result.flags)
        progress.done += 1
        future.release()
        if on_progress is not None:
            on_progress(progress)
    report.flags.sort(key=lambda f: (f.start_ns, f.station_id, f.connector_id, f.kind))
    report.seconds = time.perf_counter() - began
    if report.failures:
        shown = "; ".join(report.failures[:_SHOWN_FAILURES])
        more = len(report.failures) - _SHOWN_FAILURES
        raise BackfillError(
            f"{len(report.failures)} of {progress.tasks} backfill tasks failed (the other "
            f"{progress.tasks - len(report.failures)} stored their results; running the same "
            f"range again finishes it): {shown}" + (f"; and {more} more" if more > 0 else "")
        )
    return report


def _failure(task: Task, future: Future[TaskResult], across: Future[_Across]) -> str:
    """One failed task, named, with its reason (the day's first phase, when that failed)."""
    if across.status == "error":
        return f"{task.name}: the day's concurrent_id_tag phase failed: {_reason(across)}"
    return f"{task.name}: {_reason(future)}"


def _reason(future: Future[Any]) -> str:
    exc = future.exception()  # type: ignore[no-untyped-call]
    if isinstance(exc, ChargewatchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"  # a worker lost, or a bug: say which


def _read_until(
    day: Day, until_ns: int, cap_ns: int, owned: set[str], stops: Sequence[SessionStop]
) -> int:
    """How far a task reads: the last stop of what it owns plus ``LATE_READINGS_NS``, at
    least its day's end, and no further than ``cap_ns`` (``read_until`` of the module
    docstring); ``cap_ns`` when an owned session has not stopped by then."""
    stop_of = {s.session_id: s.ts_ns for s in stops if s.session_id in owned}
    need = day.until_ns
    if any(sid not in stop_of for sid in owned):
        need = cap_ns
    elif stop_of:
        need = max(need, max(stop_of.values()) + LATE_READINGS_NS)
    return max(min(need, cap_ns, until_ns), day.until_ns)


def _owned_sessions(
    day: Day, since_ns: int, starts: Sequence[SessionStart], stops: Sequence[SessionStop]
) -> set[str]:
    """The sessions a day owns by their start (by their stop when no start was seen); a
    session stopped before the range is not judged, as in the window."""
    stop_of = {s.session_id: s.ts_ns for s in stops}
    owned = {
        s.session_id
        for s in starts
        if bool(day.owns(s.ts_ns)) and stop_of.get(s.session_id, since_ns) >= since_ns
    }
    started = {s.session_id for s in starts}
    owned |= {
        s.session_id
        for s in stops
        if s.session_id not in started and s.ts_ns >= since_ns and bool(day.owns(s.ts_ns))
    }
    return owned


def _settle_heap() -> None:
    """Move what the worker holds so far out of the garbage collector's sight, at the start
    of each task. A task makes millions of short-lived objects (InfluxDB's JSON answers), so
    full collections come often, and in a Dask worker each one also walked the worker's own
    long-lived state: a 20-station day took 4.3-5.4 s in a worker against 2.4 s in one process,
    2.7 s with this (``orjson.loads`` 0.5 s against 0.05 s). Garbage from the task before is
    collected first, so nothing is frozen that could be freed."""
    gc.collect()
    gc.freeze()


def _across_task(
    source: Source,
    parts: list[tuple[str, ...]],
    day: Day,
    span: tuple[int, int],
    stations: StationMetadata | None,
) -> _Across:
    """Phase 1 of a day: the kinds judged across stations, for the sessions the day owns."""
    _settle_heap()
    across_kinds: list[Detector] = [d for d in default_detectors() if not d.per_row]
    if not across_kinds:
        return _Across({}, [])
    since_ns, until_ns = span
    cap = min(until_ns, day.until_ns + SESSION_LOOKBACK_NS)
    with source.client() as client:
        spans = [
            read_spans(client, part, day.since_ns, cap, lookback=WINDOW_LOOKBACK) for part in parts
        ]
    starts = [s for found in spans for s in found.starts]
    stops = [s for found in spans for s in found.stops]
    owned = sorted(_owned_sessions(day, since_ns, starts, stops))
    verdicts = _judge_across(spans, across_kinds, cap, stations)
    ids = np.array(owned, dtype=object)
    return _Across({sid: i for i, sid in enumerate(owned)}, verdicts.take(ids))


def _judge_task(
    source: Source,
    task: Task,
    span: tuple[int, int],
    across: _Across,
    stations: StationMetadata | None,
    judged_at_ns: int,
) -> TaskResult:
    """Phase 2: one partition's day, read, judged and stored (module docstring)."""
    _settle_heap()
    since_ns, until_ns = span
    day = task.day
    report = DetectReport()
    began = time.perf_counter()
    cap = min(until_ns, day.until_ns + SESSION_LOOKBACK_NS)
    catalog = StateStore(source.state_db_url) if source.state_db_url is not None else None
    try:
        with source.client() as client:
            found = read_sessions(
                client, task.stations, day.since_ns, cap, lookback=WINDOW_LOOKBACK
            )
            owned = _owned_sessions(day, since_ns, found.starts, found.stops)
            read_until = _read_until(day, until_ns, cap, owned, found.stops)
            starts = [s for s in found.starts if s.ts_ns < read_until]
            sessions = SessionEvents(
                starts=starts,
                stops=[s for s in found.stops if s.ts_ns < read_until],
                judged=owned,
                late={},
                earliest_ns=min(
                    [day.since_ns, *(s.ts_ns for s in starts if s.session_id in owned)]
                ),
            )
            events, _kept = read_partition(
                client, task.stations, sessions, day.since_ns, read_until, lookback=WINDOW_LOOKBACK
            )
            report.lines = len(events.readings) + len(events.control)
            handout = _assemble(events)
            del events
            per_row = [d for d in default_detectors() if d.per_row]
            fitted: list[Detector] | None = None
            if handout.sample is not None:  # several batches: fitted on rows of them all
                fitted = fit_detectors(with_stations(handout.sample, stations), per_row)
            flags: list[Flag] = []
            for batch in handout:
                if fitted is None:  # one batch: what was read is the history, as in the window
                    fitted = fit_detectors(with_stations(batch, stations), per_row)
                kept = batch.take(_owned_rows(batch, day, sessions, read_until))
                del batch
                if kept.n_sessions:
                    flags += _judge_rows(
                        client,
                        kept,
                        sessions,
                        across,
                        fitted,
                        read_until,
                        report,
                        catalog=catalog,
                        judged_at_ns=judged_at_ns,
                        # no previous window: every profile and usage line is written
                        lines=_Lines(set()),
                    )
    finally:
        if catalog is not None:
            catalog.close()
    report.flags_by_kind.update(flag.kind for flag in flags)
    report.seconds = time.perf_counter() - began
    return TaskResult(flags, report, read_until)


def _owned_rows(
    batch: SessionBatch, day: Day, sessions: SessionEvents, read_until: int
) -> np.ndarray:
    """The rows of ``batch`` the day judges: its sessions (``sessions.judged``; a session
    known by its readings alone, by its first reading), and orphan segments ending in it."""
    sid = batch.session_id
    orphan = np.array([s is None for s in sid], dtype=bool)
    known = {s.session_id for s in sessions.starts} | {s.session_id for s in sessions.stops}
    unknown = np.array([s is not None and s not in known for s in sid], dtype=bool)
    named = np.array([s is not None and s in sessions.judged for s in sid], dtype=bool)
    named |= unknown & day.owns(batch.start_ns)
    ended = _orphan_end(batch, orphan, read_until, sessions.starts)
    in_day = (ended >= day.since_ns) & (ended < day.until_ns)
    return np.asarray(named | (orphan & in_day))
