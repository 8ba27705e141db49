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
from chargewatch.schema import RX_BAND_NS
from chargewatch.site_store import load_metadata
from chargewatch.state import StateStore

logger = logging.getLogger(__name__)

CURSOR = "detect"
_NS = 1_000_000_000


@dataclass(slots=True)
class JobStatus:
    """What the job has done, for /healthz and metrics; failures are kept, not only logged."""

    runs: int = 0
    failures: int = 0
    last_error: str | None = None
    last_report: DetectReport | None = None
    flags_written: int = 0
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
        self.status = JobStatus()
        # asked once per run for the detectors to score with (a promoted model version's,
        # ``analytics.learned.ModelSource``); None, or None returned: the built-in ones
        self.detectors = detectors
        # What each partition's last window read that the next one needs again (open
        # sessions' readings) could be kept between runs (``detect_window(caches=...)``), but
        # with it a session whose stop arrived late lost its wrong-clock readings in one test
        # fleet: off until that is found, every window reads its sessions from InfluxDB.
        self._caches: dict[tuple[str, ...], ReadingCache] | None = None

    def run(self, now_ns: int) -> list[DetectReport]:
        """Judge everything between the cursor and ``now_ns``; the cursor then rests ``settle``
        behind ``now_ns``. Returns one report per window (several when catching up)."""
        until_ns = now_ns
        settled_ns = now_ns - self.settle_ns
        since_ns = self.state.cursor(CURSOR)
        if since_ns is None:
            since_ns = settled_ns - self.first_lookback_ns
        reports: list[DetectReport] = []
        stations = load_metadata(self.state)  # read each run: an import applies without restart
        chosen = self.detectors() if self.detectors is not None else None
        while since_ns < until_ns:
            end_ns = min(until_ns, since_ns + self.max_window_ns)
            flags, report = detect_window(
                self.client,
                since_ns,
                end_ns,
                catalog=self.state,
                judged_at_ns=now_ns,
                stations=stations,
                caches=self._caches,
                detectors=chosen,
            )
            record_detections(self.state, flags, detected_ns=now_ns)  # the time to flag
            # never past now - settle: the newest seconds are read again at the next run
            self.state.set_cursor(CURSOR, min(end_ns, settled_ns))
            reports.append(report)
            with self.status.lock:
                self.status.flags_written += len(flags)
                self.status.last_report = report
            since_ns = end_ns
        return reports

    def run_guarded(self, clock: Callable[[], datetime]) -> None:
        """The scheduler's entry: the clock is read here, at the edge; errors are recorded."""
        now = clock()
        with self.status.lock:
            self.status.runs += 1
        try:
            reports = self.run(int(now.timestamp() * _NS))
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
    """Run ``job`` every ``interval_s`` in a background scheduler, starting now."""
    scheduler = BackgroundScheduler(timezone=UTC)
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
