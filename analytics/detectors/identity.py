"""Energy that no accepted user pays for, and one card in two places at once."""

from __future__ import annotations

from typing import Self

import numpy as np

from analytics.batch import NO_TIME, IntArray, SessionBatch
from analytics.detectors.base import BaseDetector, KindResult
from analytics.detectors.meter import (
    JUMP_JITTER_S,
    JUMP_RATED_MARGIN,
    ROUNDING_STEPS,
    jump_allowance_wh,
)
from analytics.detectors.prepared import NS_PER_S, prepared
from analytics.detectors.ratings import StationRatings, rated_power_w
from analytics.detectors.reductions import pick, row_max, row_sum, trapezoid_wh
from analytics.detectors.timing import fmt_span
from analytics.detectors.verdicts import build_result, excess_score, fmt_kwh, is_none
from chargewatch.kinds import AnomalyKind


class UnauthorizedEnergy(BaseDetector):
    """Energy delivered on an orphan segment (readings with no session open) or in a session
    whose authorization was not ``Accepted`` (and not unknown). Learns each station's rated
    power (``ratings_``), to tell a meter's jump (as meter_jump's defaults define it) from
    energy.

    Parameters
    ----------
    min_energy_wh : float, default 100.0
        Well above a register's resolution (1-10 Wh) and what an idle meter counts; half a
        minute of the slowest charge.
    flowing_w : float, default 100.0
        Power above this flows (where the energy shows): a meter at rest shows 0 W plus a few
        watts of noise.
    """

    kind = AnomalyKind.UNAUTHORIZED_ENERGY

    def __init__(self, *, min_energy_wh: float = 100.0, flowing_w: float = 100.0) -> None:
        self.min_energy_wh = min_energy_wh
        self.flowing_w = flowing_w

    def fit(self, batch: SessionBatch) -> Self:
        self.ratings_ = StationRatings.learn(batch)
        return super().fit(batch)

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        orphan = is_none(batch.session_id)
        auth = batch.auth_result
        concerned = orphan | (~is_none(auth) & np.not_equal(auth, "Accepted"))
        rows = np.flatnonzero(concerned)
        if rows.size == batch.n_sessions:
            return self._score_concerned(batch, now_ns)
        # only orphan segments and sessions not accepted can carry this kind
        part = self._score_concerned(batch.take(rows), now_ns)
        out = KindResult.empty(self.kind, batch.n_sessions)
        for name in ("score", "flagged", "start_ns", "end_ns", "reason"):
            getattr(out, name)[rows] = getattr(part, name)
        return out

    def _score_concerned(self, batch: SessionBatch, now_ns: int) -> KindResult:
        prep = prepared(batch, now_ns)
        rated = rated_power_w(prep, self.ratings_.lookup(batch.station_id))
        allowed = jump_allowance_wh(
            prep,
            rated,
            rated_margin=JUMP_RATED_MARGIN,
            jitter_s=JUMP_JITTER_S,
            resolution_steps=ROUNDING_STEPS,
        )
        # register rises a meter could really count (a jump is a meter fault, not energy)
        counted = (prep.de_wh > 0) & ~(prep.de_wh > allowed)
        e_reg = row_sum(np.where(counted, prep.de_wh, 0.0))
        e_pow = row_sum(np.maximum(trapezoid_wh(prep.power_w, prep.dt_s), 0.0))
        energy = np.maximum(e_reg, e_pow)
        orphan = is_none(batch.session_id)
        auth = batch.auth_result
        rejected = ~orphan & ~is_none(auth) & np.not_equal(auth, "Accepted")
        concerned = orphan | rejected
        x = np.where(concerned, energy / self.min_energy_wh, 0.0)
        flagged = concerned & (x > 1.0)

        flowing = prep.valid & (prep.power_w > self.flowing_w)
        flowing[:, 1:] |= counted
        m = flowing.shape[1]
        first = np.argmax(flowing, axis=1) if m else np.zeros(batch.n_sessions, np.int64)
        last = m - 1 - np.argmax(flowing[:, ::-1], axis=1) if m else first
        start = pick(prep.t_ns, first).astype(np.int64)
        end = pick(prep.t_ns, last).astype(np.int64)
        peak = row_max(prep.power_w)
        not_scored = np.full(batch.n_sessions, None, dtype=object)
        not_scored[concerned & (prep.count == 0)] = "no readings with a trustworthy time"

        def describe(rows: np.ndarray) -> list[str]:
            out = []
            for i in rows:
                what = (
                    "with no session open"
                    if orphan[i]
                    else f"in a session whose id tag was {auth[i]}"
                )
                power = f", up to {peak[i] / 1000:.1f} kW" if peak[i] > 0 else ""
                out.append(
                    f"{fmt_kwh(energy[i])} delivered {what} on connector "
                    f"{batch.connector_id[i]} over {fmt_span((end[i] - start[i]) / NS_PER_S)}"
                    f"{power}"
                )
            return out

        return build_result(self.kind, excess_score(x), flagged, start, end, describe, not_scored)


def session_ends(batch: SessionBatch, now_ns: int) -> IntArray:
    """When each row is known to end: its stop, or while it is open its latest reading with a
    trusted time (not beyond; never before its start). Only open rows need the cleaned sample
    view, and they are few."""
    end = batch.stop_ns.copy()
    open_rows = np.flatnonzero(end == NO_TIME)
    if open_rows.size:
        prep = prepared(batch.take(open_rows), now_ns)
        last = pick(prep.t_ns, np.maximum(prep.count - 1, 0)).astype(np.int64)
        start = batch.start_ns[open_rows]
        end[open_rows] = np.where(prep.count > 0, np.maximum(last, start), start)
    return end


class ConcurrentIdTag(BaseDetector):
    """One id tag (pseudonym) in two sessions that overlap in time at different stations; both
    sessions are flagged. Sessions are sorted by (pseudonym, start); each is compared with the
    one before it and with the earlier session of the same user that ends last. Learns
    nothing; pairs sessions across rows (``per_row`` False).

    Parameters
    ----------
    min_overlap_s : float, default 60.0
        Two chargers' clocks and a late stop message may make back-to-back sessions touch by
        tens of seconds.
    """

    kind = AnomalyKind.CONCURRENT_ID_TAG
    per_row = False

    def __init__(self, *, min_overlap_s: float = 60.0) -> None:
        self.min_overlap_s = min_overlap_s

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        n = batch.n_sessions
        user = batch.id_pseudonym
        judged = ~is_none(user) & ~is_none(batch.session_id)
        judged &= batch.start_ns != NO_TIME
        end = session_ends(batch, now_ns)
        rows = np.flatnonzero(judged)
        overlap_s = np.zeros(n)
        partner = np.full(n, -1, dtype=np.int64)
        if rows.size > 1:
            _, group = np.unique(user[rows].astype(str), return_inverse=True)
            # ties broken by session id, so the order (and any pairing) never depends on the
            # order of the rows
            _, sid_rank = np.unique(batch.session_id[rows].astype(str), return_inverse=True)
            by_user = np.lexsort((sid_rank, batch.start_ns[rows], group))
            order, g = rows[by_user], group[by_user]
            t_ref = int(batch.start_ns[rows].min())
            start_s = (batch.start_ns[order] - t_ref) / NS_PER_S
            end_s = (end[order] - t_ref) / NS_PER_S
            span = float(max(end_s.max(), start_s.max()) - min(start_s.min(), 0.0)) + 1.0
            # running max of the end within each user: offset users apart by more than any span
            keyed = end_s + g * span
            running = np.maximum.accumulate(keyed)
            holder = np.maximum.accumulate(np.where(keyed == running, np.arange(order.size), 0))
            prev = np.concatenate(([-1], holder[:-1]))
            same_user = np.concatenate(([False], g[1:] == g[:-1]))
            candidates = (
                np.where(same_user, prev, -1),
                np.where(same_user, np.arange(order.size) - 1, -1),
            )
            station = batch.station_id[order]
            for cand in candidates:  # two candidate partners, not a loop over sessions
                ok = cand >= 0
                c = np.where(ok, cand, 0)
                ov = np.minimum(end_s[c], end_s) - start_s
                ok &= (station[c] != station) & (ov > overlap_s[order])
                ok &= ov > 0
                me, other = order[ok], order[c[ok]]
                overlap_s[me] = ov[ok]
                partner[me] = other
                better = ov[ok] > overlap_s[other]
                overlap_s[other[better]] = ov[ok][better]
                partner[other[better]] = me[better]
        x = overlap_s / self.min_overlap_s
        flagged = judged & (x > 1.0)
        p = np.where(partner >= 0, partner, 0)
        ov_start = np.maximum(batch.start_ns, batch.start_ns[p])
        ov_end = np.minimum(end, end[p])
        not_scored = np.full(n, None, dtype=object)
        not_scored[is_none(user)] = "no id tag"
        not_scored[is_none(batch.session_id)] = "readings outside any session"

        def describe(rows_: np.ndarray) -> list[str]:
            return [
                f"the same id tag was in use at station {batch.station_id[p[i]]} "
                f"(session {batch.session_id[p[i]]}) at the same time, overlapping by "
                f"{fmt_span(overlap_s[i])}"
                for i in rows_
            ]

        return build_result(
            self.kind,
            excess_score(x),
            flagged,
            ov_start.astype(np.int64),
            ov_end.astype(np.int64),
            describe,
            not_scored,
        )
