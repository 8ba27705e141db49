"""The simulation run: plan the fleet, simulate station by station, write sorted files."""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .assign import assign_anomalies, assign_id_tags
from .config import ANOMALY_KINDS, EVENT_TYPES, SimulationConfig, SimulationSummary, make_rng
from .events import EventBuffer
from .fleet import make_id_tags, make_station
from .injectors import INJECTORS, Label, SessionSpan
from .output import PLAIN_STYLE, SortedRuns, write_labels
from .planning import StationPlan, plan_station
from .sites import place_sites, write_stations
from .station import StationRun

logger = logging.getLogger(__name__)

# Random streams, one purpose each (see make_rng).
_STREAM_STATION, _STREAM_POOL, _STREAM_ANOMALIES, _STREAM_TAGS, _STREAM_EVENTS = range(5)
_STREAM_SITES = 5
# Lines held before a sorted run is spooled to disk (about 100 MB of memory).
_RUN_LINES = 300_000


def simulate(
    config: SimulationConfig,
    events_path: Path,
    labels_path: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    stations_path: Path | None = None,
) -> SimulationSummary:
    """Write a labeled fleet: events (CONTRACTS.md section 1) and labels (section 2); given
    ``stations_path``, the stations' sites, coordinates and declared ratings as the CSV that
    ``chargewatch stations import`` reads (``sites.write_stations``).

    The same config writes byte-identical files. ``progress(done, total)`` is called as
    stations complete.
    """
    start_ms, end_ms = config.start_ms, config.end_ms
    pool = make_id_tags(max(50, 8 * config.stations), make_rng(config.seed, _STREAM_POOL))
    plans: list[StationPlan] = []
    for index in range(config.stations):
        rng = make_rng(config.seed, _STREAM_STATION, index)
        plans.append(plan_station(make_station(index, rng), start_ms, end_ms, pool, rng))
    place_sites(plans, make_rng(config.seed, _STREAM_SITES))
    assign_anomalies(
        plans, start_ms, end_ms, config.anomaly_rate, make_rng(config.seed, _STREAM_ANOMALIES)
    )
    assign_id_tags(plans, pool, make_rng(config.seed, _STREAM_TAGS))
    styles = {
        p.station.station_id: p.station.style if config.message_variety else PLAIN_STYLE
        for p in plans
    }
    # ties in time are broken by station id, as the file's consumers sort
    rank_of = {
        p.station.station_id: r
        for r, p in enumerate(sorted(plans, key=lambda p: p.station.station_id))
    }

    labels: list[Label] = []
    spans: dict[str, SessionSpan] = {}
    counts: Counter[str] = Counter()
    sessions = 0
    with tempfile.TemporaryDirectory(prefix=".simulate-", dir=events_path.parent) as tmp:
        runs = SortedRuns(Path(tmp), (styles[sid] for sid in sorted(styles)))
        buffer = EventBuffer()
        for done, plan in enumerate(plans, start=1):
            rng = make_rng(config.seed, _STREAM_EVENTS, plan.station.index)
            result = StationRun(
                plan,
                rank_of[plan.station.station_id],
                start_ms,
                end_ms,
                rng,
                buffer,
                late_uploads=config.message_variety,
                close_at_end=config.close_at_end,
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
    for injector in INJECTORS.values():
        labels += injector.fleet_labels(plans, spans)
    label_counts = Counter(label["kind"] for label in labels)
    if stations_path is not None:
        write_stations(stations_path, plans)
    write_labels(labels_path, labels, styles)
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
        labels_by_kind={k.value: label_counts[k] for k in ANOMALY_KINDS},
    )
