"""The figures operations and billing read (``chargewatch.figures``), from InfluxDB and the state
database; injected into the API by ``service`` (``api.network.NetworkSource``).

Windows are bounded (``MAX_WINDOW_NS``); every query bounds time on both ends. Nothing is
cached: each answer is computed from what is stored when it is asked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import numpy as np

from analytics.network.alerts import open_alerts
from analytics.network.counts import (
    DURATION_EDGES_MIN,
    ENERGY_EDGES_KWH,
    SessionOutcomes,
    histogram,
    peak_concurrency,
    returning_users,
)
from analytics.network.detections import time_to_flag
from analytics.network.hours import LocalQuarters
from analytics.network.sessions import SessionTable, pseudonyms_between, read_sessions
from analytics.network.stations import last_seen, latest_statuses, status_events
from analytics.plots_usage import render_usage_png
from analytics.usage import MAX_SESSION_NS, PIECE_NS
from analytics.usage_table import quarter_sums
from chargewatch import catalog
from chargewatch.figures import (
    HOURS_OF_WEEK,
    REVIEW_KINDS,
    BilledSession,
    NetworkKpis,
    StationFigures,
    UsageFigures,
    UserEnergy,
)
from chargewatch.influx import InfluxClient
from chargewatch.kinds import AnomalyKind
from chargewatch.state import StateStore

__all__ = ["MAX_WINDOW_NS", "NetworkReader", "quarter_window"]

# A calendar quarter at most (the longest has 92 days): the longest period operations reports
# compare, and a bound on one request's work: 8,832 quarter hours from InfluxDB, at most a
# quarter's sessions from the catalogue.
MAX_WINDOW_NS = 92 * 24 * 3600 * 1_000_000_000
_KINDS = tuple(kind.value for kind in AnomalyKind)


def quarter_window(since_ns: int, until_ns: int) -> tuple[int, int]:
    """The window widened to whole quarter hours of UTC."""
    return since_ns - since_ns % PIECE_NS, -(-until_ns // PIECE_NS) * PIECE_NS


def _check(since_ns: int, until_ns: int) -> None:
    if until_ns <= since_ns:
        raise ValueError("until must be later than since")
    if until_ns - since_ns > MAX_WINDOW_NS:
        raise ValueError("the window is longer than 92 days")


class NetworkReader:
    """Thread-safe: its clients are (httpx's pool, SQLAlchemy's engine)."""

    def __init__(self, client: InfluxClient, store: StateStore) -> None:
        self._client = client
        self._store = store

    # -- stations -------------------------------------------------------------------------------

    def stations(self, since_ns: int, until_ns: int) -> list[StationFigures]:
        """Every station heard from in the 30 days before ``until_ns`` or with a session in the
        window, by id."""
        return self._stations(None, since_ns, until_ns)

    def station(self, station_id: str, since_ns: int, until_ns: int) -> StationFigures | None:
        """One station's figures; None when it was neither heard from nor had a session."""
        found = self._stations([station_id], since_ns, until_ns)
        return found[0] if found else None

    def _stations(
        self, only: Sequence[str] | None, since_ns: int, until_ns: int
    ) -> list[StationFigures]:
        _check(since_ns, until_ns)
        statuses = latest_statuses(self._client, until_ns, only)
        seen = last_seen(self._client, until_ns, only)
        table = read_sessions(self._store, since_ns=since_ns, until_ns=until_ns, station_ids=only)
        # Faulted statuses up to the latest stop a session of the window may have.
        events = status_events(self._client, since_ns, until_ns + MAX_SESSION_NS, only)
        outcomes = SessionOutcomes(table, events)
        alerts = open_alerts(self._store, only[0] if only is not None and len(only) == 1 else None)
        in_window = events.time_ns < until_ns
        faults: dict[str, Counter[str]] = {}
        warnings: dict[str, Counter[str]] = {}
        for station, code, faulted in zip(
            events.station_id[in_window],
            events.error_code[in_window],
            events.faulted[in_window],
            strict=True,
        ):
            (faults if faulted else warnings).setdefault(str(station), Counter())[str(code)] += 1
        ids = sorted(set(statuses) | set(seen) | {str(s) for s in table.station_id})
        if only is not None:
            ids = [s for s in ids if s in only]
        groups = {s: i for i, s in enumerate(ids)}
        which = np.fromiter((groups[str(s)] for s in table.station_id), np.int64, count=len(table))
        by_station = outcomes.by_group(which, len(ids))
        return [
            StationFigures(
                station_id=station,
                last_seen_ns=seen.get(station),
                connectors=tuple(statuses.get(station, ())),
                outcomes=by_station[groups[station]],
                faults_by_error_code=dict(sorted(faults.get(station, Counter()).items())),
                warnings_by_error_code=dict(sorted(warnings.get(station, Counter()).items())),
                open_alerts=tuple(alerts.get(station, ())),
            )
            for station in ids
        ]

    # -- usage ----------------------------------------------------------------------------------

    def usage(
        self, since_ns: int, until_ns: int, *, station_ids: Sequence[str] | None, tz: str
    ) -> UsageFigures:
        """Usage over the window widened to quarter hours (``quarter_window``), hours of week
        in ``tz`` (an IANA zone)."""
        since_ns, until_ns = quarter_window(since_ns, until_ns)
        _check(since_ns, until_ns)
        zone = ZoneInfo(tz)
        quarters = LocalQuarters(since_ns, until_ns, zone)
        sums = quarter_sums(self._store, since_ns, until_ns, station_ids)
        around = read_sessions(
            self._store,
            since_ns=since_ns - MAX_SESSION_NS,
            until_ns=until_ns,
            station_ids=station_ids,
        )
        window = around.take(around.start_ns >= since_ns)
        connectors = self._connectors(around, until_ns, station_ids)
        exposure = np.full(len(quarters), connectors * PIECE_NS / 1e9)

        def by_hour_of_week(values: np.ndarray) -> np.ndarray:
            return np.bincount(quarters.hour_of_week, values, minlength=HOURS_OF_WEEK)

        hours, first_quarter, hour_of_quarter = np.unique(
            quarters.hour_start_ns, return_index=True, return_inverse=True
        )
        peak, peak_at = peak_concurrency(around.start_ns, around.end_ns, since_ns, until_ns)
        earlier = pseudonyms_between(
            self._store,
            since_ns=since_ns - (until_ns - since_ns),
            until_ns=since_ns,
            station_ids=station_ids,
        )
        users, returning = returning_users(window.pseudonym, earlier)
        finished = window.take(window.finished)
        return UsageFigures(
            since_ns=since_ns,
            until_ns=until_ns,
            tz=zone.key,
            station_ids=None if station_ids is None else tuple(station_ids),
            connectors=connectors,
            exposure_s=by_hour_of_week(exposure),
            occupied_s=by_hour_of_week(sums.occupied_s),
            charging_s=by_hour_of_week(sums.charging_s),
            idle_after_full_s=by_hour_of_week(sums.idle_after_full_s),
            energy_wh=by_hour_of_week(sums.energy_wh),
            hour_starts_ns=hours.astype(np.int64),
            hour_offsets_s=quarters.offsets_s[first_quarter],
            hour_energy_wh=np.bincount(
                hour_of_quarter, sums.energy_wh, minlength=hours.size
            ).astype(np.float64),
            sessions=len(window),
            duration_histogram=histogram(finished.duration_s / 60.0, DURATION_EDGES_MIN, "min"),
            energy_histogram=histogram(finished.energy_wh / 1000.0, ENERGY_EDGES_KWH, "kWh"),
            peak_concurrent=peak,
            peak_at_ns=peak_at,
            users=users,
            returning_users=returning,
        )

    def usage_png(
        self, since_ns: int, until_ns: int, *, station_ids: Sequence[str] | None, tz: str
    ) -> bytes:
        return render_usage_png(self.usage(since_ns, until_ns, station_ids=station_ids, tz=tz))

    def _connectors(
        self, sessions: SessionTable, until_ns: int, station_ids: Sequence[str] | None
    ) -> int:
        """Connectors in scope: those with a status in the 30 days before ``until_ns``, and
        those with a session in or just before the window."""
        known = {
            (station, c.connector_id)
            for station, connectors in latest_statuses(self._client, until_ns, station_ids).items()
            for c in connectors
        }
        known.update(
            zip(map(str, sessions.station_id), map(int, sessions.connector_id), strict=True)
        )
        return len(known)

    # -- billing --------------------------------------------------------------------------------

    def user_energy(self, pseudonym: str, since_ns: int, until_ns: int) -> UserEnergy:
        """The sessions of one user pseudonym that started in the window, oldest first; those
        whose energy or owner is in doubt (``REVIEW_KINDS``) or that are still open apart."""
        _check(since_ns, until_ns)
        clean: list[BilledSession] = []
        review: list[BilledSession] = []
        for row in catalog.sessions_of_pseudonym(self._store, pseudonym, since_ns, until_ns):
            reasons = tuple(k for k in row.flagged_kinds if k in REVIEW_KINDS)
            reasons += ("open",) if row.stop_ns is None else ()
            billed = BilledSession(
                session_id=row.session_id,
                station_id=row.station_id,
                connector_id=row.connector_id,
                start_ns=row.start_ns,
                stop_ns=row.stop_ns,
                energy_register_wh=row.energy_register_wh,
                energy_power_wh=row.energy_power_wh,
                billing_confidence=row.billing_confidence,
                billing_notes=row.billing_notes,
                flagged_kinds=row.flagged_kinds,
                review=reasons,
            )
            (review if reasons else clean).append(billed)
        return UserEnergy(
            pseudonym=pseudonym,
            since_ns=since_ns,
            until_ns=until_ns,
            sessions=tuple(clean),
            needs_review=tuple(review),
        )

    # -- the network ----------------------------------------------------------------------------

    def kpis(self, since_ns: int, until_ns: int) -> NetworkKpis:
        _check(since_ns, until_ns)
        table = read_sessions(self._store, since_ns=since_ns, until_ns=until_ns)
        events = status_events(self._client, since_ns, until_ns + MAX_SESSION_NS, faulted_only=True)
        flagged = Counter(kind for kinds in table.flagged_kinds for kind in kinds)
        return NetworkKpis(
            since_ns=since_ns,
            until_ns=until_ns,
            stations=len(set(table.station_id.tolist())),
            outcomes=SessionOutcomes(table, events).summary(),
            flagged_sessions=int(sum(1 for kinds in table.flagged_kinds if kinds)),
            flagged_by_kind={kind: flagged.get(kind, 0) for kind in _KINDS},
            time_to_flag=time_to_flag(self._store, since_ns, until_ns),
        )
