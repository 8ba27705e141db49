"""The scheduled detection job: every interval, judge what arrived since the last run.

Each run reads the window ``[cursor, now)`` from InfluxDB (with the look-back ``detect_window``
needs for sessions that started earlier), scores its sessions, stores profiles, flags and the
session catalogue's rows, and moves the cursor, kept in the state database, to ``now - settle``:
the newest ``settle`` seconds are judged now (a stall shows within one interval of its data
arriving) and read again at the next run, so a reading that arrives after its session was
judged is found (by its stamp while it lies inside the receive-time band, by its receive time
beyond it, ``schema.RX_BAND_NS``). Sessions still open are judged again at every run until they
stop; a verdict that no longer holds withdraws its flags. Results are points keyed by their
start (and catalogue rows by session), so a run repeated after a crash overwrites rather than
duplicates; after downtime the job catches up window by window.

Several instances on one state database share the work by station partitions
(``analytics.read.partition.partition_of``: ``partitions`` of them, the same on every instance).
Each run begins by balancing this instance's leases (``chargewatch.leases.PartitionShare``):
renew those held, give back what exceeds the fair share ``ceil(partitions / live instances)``,
take free or expired partitions up to it. Then it judges only the partitions it holds, each from
its own cursor (``detect:p07/16``), so a partition taken over from a dead instance resumes where
that one left it; partitions whose cursors agree are judged together, in one window. Between
windows the leases are renewed, and a partition lost meanwhile is dropped, its cursor left to
its new holder. A lease lasts ``lease_s``, one job interval in ``serve``, and is renewed
``LEASE_RENEWALS`` times an interval by a light job of its own (``keep_leases``), besides every
run: it outlives three late or failed renewals, and a slow detection run does not let it lapse.
A dead instance's partitions are free at most one interval after its death and taken, and
judged, at the next run of another instance: within two intervals. A clean stop gives the
leases back at once (``release``). Between the windows of one run (catching up) the leases are
renewed at that same pace, a quarter interval, not after every window: a lease renewed less
than its time ago cannot have been taken.

APScheduler runs it (``coalesce``: missed runs collapse into one; ``max_instances=1``: never two
at once). The job never reads the clock itself: the scheduler's wrapper passes ``now``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from analytics.detectors.base import Detector
from analytics.network.detections import record_detections
from analytics.pipeline import DetectReport
from analytics.read.partition import ReadingCache
from analytics.window import detect_window
from chargewatch.errors import ChargewatchError
from chargewatch.influx import InfluxClient
from chargewatch.leases import LeaseBook, PartitionShare, new_instance_id
from chargewatch.schema import RX_BAND_NS
from chargewatch.site_store import load_metadata
from chargewatch.state import StateError, StateStore

logger = logging.getLogger(__name__)

# The job's single cursor from before it was partitioned: a partition without a cursor of its
# own starts there (no further back than the first look-back), so an upgrade resumes.
CURSOR = "detect"
# Lease renewals per job interval (a lease lasts one interval in ``serve``): three may fail or
# come late before a live instance loses its partitions.
LEASE_RENEWALS = 4
LEASES = "detect"  # the lease group: partitions' leases and cursors are named detect:p07/16
_NS = 1_000_000_000


@dataclass(slots=True)
class JobStatus:
    """What the job has done, for /healthz and metrics; failures are kept, not only logged."""

    runs: int = 0
    failures: int = 0
    last_error: str | None = None
    last_report: DetectReport | None = None
    flags_written: int = 0
    instance_id: str = ""
    partition_count: int = 0
    partitions: tuple[int, ...] = ()  # the partitions this instance holds, as of its last run
    lock: threading.Lock = field(default_factory=threading.Lock)


class DetectionJob:
    """One step of scheduled detection; ``run(now_ns)`` is safe to call again after a crash."""

    def __init__(
        self,
        client: InfluxClient,
        state: StateStore,
        *,
        settle_s: float = RX_BAND_NS / _NS,
        first_lookback_s: float = 24 * 3600,
        max_window_s: float = 6 * 3600,
        detectors: Callable[[], Sequence[Detector] | None] | None = None,
        partitions: int = 16,
        lease_s: float = 60.0,
        instance_id: str | None = None,
    ) -> None:
        # settle: readings carry the charger's time and reach InfluxDB a little later (network,
        # spool); the newest seconds are judged now and read again at the next run, so the
        # cursor stays this far behind ``now``. As long as the receive-time band
        # (schema.RX_BAND_NS): a reading that arrives after its session's stretch left the
        # re-read seconds lies outside the band, where the window finds it by receive time.
        self.client = client
        self.state = state
        self.settle_ns = int(settle_s * _NS)
        self.first_lookback_ns = int(first_lookback_s * _NS)
        self.max_window_ns = int(max_window_s * _NS)
        # partitions: Settings.detect_partitions (16 there, and why); lease_s: one interval of
        # the job in serve (module docstring)
        self.instance_id = instance_id if instance_id is not None else new_instance_id()
        book = LeaseBook(state, self.instance_id, ttl_ns=int(lease_s * _NS))
        self.share = PartitionShare(book, LEASES, partitions)
        # between windows of a run, the leases are renewed as often as ``keep_leases`` renews
        # them, not after every window (module docstring)
        self.renew_every_ns = int(lease_s * _NS) // LEASE_RENEWALS
        self._renewed_ns = 0
        self.status = JobStatus(instance_id=self.instance_id, partition_count=partitions)
        # asked once per run for the detectors to score with (a promoted model version's,
        # ``analytics.learned.ModelSource``); None, or None returned: the built-in ones
        self.detectors = detectors
        # What each partition's last window read that the next one needs again (open
        # sessions' readings): kept between runs (``detect_window(caches=...)``), rebuilt from
        # InfluxDB after a restart or when a partition's stations change
        self._caches: dict[tuple[str, ...], ReadingCache] = {}

    def cursor_name(self, partition: int) -> str:
        """The job cursor (and the lease) of a partition."""
        return self.share.name(partition)

    def cursors(self) -> dict[int, int | None]:
        """Every partition's cursor (None: never judged)."""
        return {p: self.state.cursor(self.cursor_name(p)) for p in range(self.share.count)}

    def run(self, now_ns: int, *, clock_ns: Callable[[], int] | None = None) -> list[DetectReport]:
        """Balance the leases, then judge each partition held between its cursor and
        ``now_ns``; the cursors then rest ``settle`` behind ``now_ns``. Returns one report per
        window (several when catching up). ``clock_ns`` (the wall clock) renews the leases
        between windows; without it they are renewed as of ``now_ns``."""
        held = self.share.balance(now_ns)
        self._renewed_ns = now_ns  # the leases held were renewed (or taken) as of now
        self._hold(held)
        settled_ns = now_ns - self.settle_ns
        since = {p: self._start(p, settled_ns) for p in held}
        reports: list[DetectReport] = []
        stations = load_metadata(self.state)  # read each run: an import applies without restart
        chosen = self.detectors() if self.detectors is not None else None
        while since and (first_ns := min(since.values())) < now_ns:
            group = sorted(p for p, at in since.items() if at == first_ns)
            # no further than the next partition's cursor: from there the two go on as one
            later = [at for at in since.values() if at > first_ns]
            end_ns = min([now_ns, first_ns + self.max_window_ns, *later])
            flags, report = detect_window(
                self.client,
                first_ns,
                end_ns,
                catalog=self.state,
                judged_at_ns=now_ns,
                stations=stations,
                caches=self._caches,
                detectors=chosen,
                partitions=group,
                partition_count=self.share.count,
            )
            record_detections(self.state, flags, detected_ns=now_ns)  # the time to flag
            since = self._advance(
                since, group, end_ns, settled_ns, clock_ns() if clock_ns else now_ns
            )
            reports.append(report)
            with self.status.lock:
                self.status.flags_written += len(flags)
                self.status.last_report = report
        return reports

    def release(self) -> None:
        """Give every lease back (a clean stop): another instance takes the partitions at its
        next run instead of waiting for them to expire."""
        try:
            self.share.release()
        except StateError as exc:
            logger.warning("could not give the detection leases back: %s", exc)
        self._hold(())

    def _advance(
        self, since: dict[int, int], group: list[int], end_ns: int, settled_ns: int, at_ns: int
    ) -> dict[int, int]:
        """After ``group`` was judged up to ``end_ns``: renew the leases (as of ``at_ns``) when
        ``renew_every_ns`` has passed since they were, move the cursors of the judged
        partitions still held (never past ``settled_ns``: the newest seconds are read again at
        the next run) and drop the partitions lost. A lease renewed less than a lease's time
        ago cannot have been taken (only an expired one is), so until a renewal is due the
        partitions are all still held: a run catching up window by window does not pay two
        commits a window for leases nobody else may touch."""
        kept = set(since)
        if at_ns - self._renewed_ns >= self.renew_every_ns:
            kept = set(self.share.renew(sorted(since), at_ns))
            self._renewed_ns = at_ns
        at = min(end_ns, settled_ns)  # one transaction for the group: one commit, not one each
        self.state.set_cursors({self.cursor_name(p): at for p in group if p in kept})
        lost = sorted(set(since) - kept)
        if lost:
            logger.warning("detection partitions %s were taken over during the run", lost)
            with self.status.lock:
                self.status.partitions = tuple(p for p in self.status.partitions if p in kept)
        return {p: (end_ns if p in group else at) for p, at in since.items() if p in kept}

    def _start(self, partition: int, settled_ns: int) -> int:
        """Where a partition's judging resumes: its cursor; else the job's single cursor of
        before partitions, or the first look-back, whichever is later."""
        cursor = self.state.cursor(self.cursor_name(partition))
        if cursor is not None:
            return cursor
        first = settled_ns - self.first_lookback_ns
        legacy = self.state.cursor(CURSOR)
        return first if legacy is None else max(legacy, first)

    def keep_leases(self, clock: Callable[[], datetime]) -> None:
        """Renew the partitions held (and this instance's presence) between runs; a partition
        found lost is dropped from what ``/healthz`` says is held (the run drops it too)."""
        with self.status.lock:
            held = self.status.partitions
        try:
            kept = set(self.share.renew(held, int(clock().timestamp() * _NS)))
        except ChargewatchError as exc:
            logger.warning("could not renew the detection leases: %s", exc)
            return
        if lost := sorted(set(held) - kept):
            logger.warning("detection partitions %s were taken over", lost)
            with self.status.lock:
                self.status.partitions = tuple(p for p in self.status.partitions if p in kept)

    def _hold(self, partitions: tuple[int, ...]) -> None:
        with self.status.lock:
            self.status.partitions = partitions

    def run_guarded(self, clock: Callable[[], datetime]) -> None:
        """The scheduler's entry: the clock is read here, at the edge; errors are recorded."""
        now = clock()
        with self.status.lock:
            self.status.runs += 1
        try:
            reports = self.run(
                int(now.timestamp() * _NS), clock_ns=lambda: int(clock().timestamp() * _NS)
            )
        except (ChargewatchError, ValueError) as exc:
            with self.status.lock:
                self.status.failures += 1
                self.status.last_error = str(exc)
            logger.warning("scheduled detection failed: %s", exc)
            return
        with self.status.lock:
            self.status.last_error = None
        for report in reports:
            logger.info("scheduled detection: %s", report.summary())


def start_scheduler(job: DetectionJob, *, interval_s: float) -> BackgroundScheduler:
    """Run ``job`` every ``interval_s`` in a background scheduler, starting now, and renew its
    leases ``LEASE_RENEWALS`` times an interval."""
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        job.keep_leases,
        "interval",
        seconds=interval_s / LEASE_RENEWALS,
        args=[lambda: datetime.now(UTC)],
        id="leases",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
    )
    scheduler.add_job(
        job.run_guarded,
        "interval",
        seconds=interval_s,
        args=[lambda: datetime.now(UTC)],
        id="detect",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC),
    )
    scheduler.start()
    return scheduler
