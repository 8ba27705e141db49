"""The simulation run: plan the fleet, simulate station by station, write sorted files."""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .assign import assign_anomalies, assign_id_tags
from .config import ANOMALY_KINDS, EVENT_TYPES, SimulationConfig, SimulationSummary, make_rng
from .events import EventBuffer
from .fleet import make_id_tags, make_station
from .output import SortedRuns, write_labels
from .planning import StationPlan, plan_station
from .station import StationRun

logger = logging.getLogger(__name__)

# Random streams, one purpose each (see make_rng).
_STREAM_STATION, _STREAM_POOL, _STREAM_ANOMALIES, _STREAM_TAGS, _STREAM_EVENTS = range(5)
# Lines held before a sorted run is spooled to disk (about 100 MB of memory).
_RUN_LINES = 300_000


def simulate(
    config: SimulationConfig,
    events_path: Path,
    labels_path: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationSummary:
    """Write a labeled fleet: events (CONTRACTS.md section 1) and labels (section 2).

    The same config writes byte-identical files. ``progress(done, total)`` is called as
    stations complete.
    """
    start_ms, end_ms = config.start_ms, config.end_ms
    pool = make_id_tags(max(50, 8 * config.stations), make_rng(config.seed, _STREAM_POOL))
    plans: list[StationPlan] = []
    for index in range(config.stations):
        rng = make_rng(config.seed, _STREAM_STATION, index)
        plans.append(plan_station(make_station(index, rng), start_ms, end_ms, pool, rng))
    assign_anomalies(
        plans, start_ms, end_ms, config.anomaly_rate, make_rng(config.seed, _STREAM_ANOMALIES)
    )
    assign_id_tags(plans, pool, make_rng(config.seed, _STREAM_TAGS))
    # ties in time are broken by station id, as the file's consumers sort
    rank_of = {
        p.station.station_id: r
        for r, p in enumerate(sorted(plans, key=lambda p: p.station.station_id))
    }

    labels: list[dict[str, Any]] = []
    spans: dict[str, tuple[str, int, int, int]] = {}
    counts: Counter[str] = Counter()
    sessions = 0
    with tempfile.TemporaryDirectory(prefix=".simulate-", dir=events_path.parent) as tmp:
        runs = SortedRuns(Path(tmp))
        buffer = EventBuffer()
        for done, plan in enumerate(plans, start=1):
            rng = make_rng(config.seed, _STREAM_EVENTS, plan.station.index)
            result = StationRun(
                plan, rank_of[plan.station.station_id], start_ms, end_ms, rng, buffer
            ).run()
            labels += result.labels
            spans.update(result.spans)
            sessions += result.sessions
            if len(buffer) >= _RUN_LINES or done == len(plans):
                runs.write_run(buffer)
                counts.update(buffer.counts)
                buffer = EventBuffer()
            if progress is not None:
                progress(done, len(plans))
        events = runs.merge_into(events_path)
    labels += _concurrent_labels(plans, spans)
    label_counts = Counter(label["kind"] for label in labels)
    write_labels(labels_path, labels)
    logger.info(
        "simulated %d stations: %d events, %d sessions, %d labels",
        config.stations,
        events,
        sessions,
        len(labels),
    )
    return SimulationSummary(
        events=events,
        events_by_type={t: counts[t] for t in EVENT_TYPES},
        sessions=sessions,
        labels_by_kind={k: label_counts[k] for k in ANOMALY_KINDS},
    )


def _concurrent_labels(
    plans: list[StationPlan],
    spans: dict[str, tuple[str, int, int, int]],
) -> list[dict[str, Any]]:
    """Both sessions of a shared card carry the label, bounded by their overlap."""
    labels = []
    for plan in plans:
        for s in plan.sessions:
            if s.anomaly != "concurrent_id_tag" or s.partner not in spans:
                continue
            station_id, connector, start_ms, stop_ms = spans[s.session_id]
            _, _, other_start_ms, other_stop_ms = spans[s.partner]
            begin_ms, end_ms = max(start_ms, other_start_ms), min(stop_ms, other_stop_ms)
            if begin_ms < end_ms:
                labels.append(
                    {
                        "session_id": s.session_id,
                        "station_id": station_id,
                        "connector_id": connector,
                        "kind": "concurrent_id_tag",
                        "start_ms": begin_ms,
                        "end_ms": end_ms,
                    }
                )
    return labels
