"""Energy that no accepted user pays for, and one card in two places at once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import NamedTuple, Self

import numpy as np

from analytics.batch import NO_TIME, BoolArray, FloatArray, IntArray, SessionBatch
from analytics.detectors.base import BaseDetector, KindResult
from analytics.detectors.energy import within_sessions_meter_values
from analytics.detectors.meter import (
    JUMP_JITTER_S,
    JUMP_RATED_MARGIN,
    ROUNDING_STEPS,
    jump_allowance_wh,
    meter_values_allowance_wh,
)
from analytics.detectors.prepared import NS_PER_S, Prepared, prepared, time_resolution_s
from analytics.detectors.ratings import StationRatings, rated_power_w, stations_of
from analytics.detectors.reductions import forward_fill, pick, row_max, row_sum, trapezoid_wh
from analytics.detectors.timing import fmt_span
from analytics.detectors.verdicts import build_result, excess_score, fmt_kwh, is_none
from chargewatch.kinds import AnomalyKind
from chargewatch.sites import StationMetadata, haversine_km


class UnauthorizedEnergy(BaseDetector):
    """Energy delivered on an orphan segment (readings with no session open; connector 0, the
    station's own meter, aside: ``_delivering_orphan``) or in a session whose authorization
    was not ``Accepted`` (and not unknown). Learns each station's rated power (``ratings_``),
    to tell a meter's jump (as meter_jump's defaults define it) from energy.

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
        orphan = _delivering_orphan(batch)
        auth = batch.auth_result
        concerned = orphan | (~is_none(auth) & np.not_equal(auth, "Accepted"))
        rows = np.flatnonzero(concerned)
        if rows.size == batch.n_sessions:
            return self._score_concerned(batch, now_ns, batch, rows)
        # only orphan segments and sessions not accepted can carry this kind
        part = self._score_concerned(batch.take(rows), now_ns, batch, rows)
        out = KindResult.empty(self.kind, batch.n_sessions)
        for name in ("score", "flagged", "start_ns", "end_ns", "reason"):
            getattr(out, name)[rows] = getattr(part, name)
        return out

    def _score_concerned(
        self, batch: SessionBatch, now_ns: int, whole: SessionBatch, rows: IntArray
    ) -> KindResult:
        """``score`` for ``batch``, the rows ``rows`` of ``whole`` (whose sessions' meter
        values may hold what an orphan segment's register counted)."""
        prep = prepared(batch, now_ns)
        rated = rated_power_w(prep, self.ratings_.lookup(batch.station_id))
        allowed = jump_allowance_wh(
            prep,
            rated,
            rated_margin=JUMP_RATED_MARGIN,
            jitter_s=JUMP_JITTER_S,
            resolution_steps=ROUNDING_STEPS,
        )
        # register rises a meter could really count (a jump is a meter fault, not energy), and
        # that no session on the connector counted as its own (a session stamped years ahead)
        counted = (prep.de_wh > 0) & ~(prep.de_wh > allowed)
        counted &= ~within_sessions_meter_values(whole, rows, prep)
        # ... at a rate something drew: a register creeping up by a few Wh an hour between
        # sessions (a meter counting the station's own standby) delivered nothing to anyone,
        # however much it adds up to overnight (an independently written fleet, field seeds
        # 1-4: 15 idle connectors flagged for 0.10-0.14 kWh over 13-20 h at 7 W). A step counts
        # where the register's mean power since it last rose exceeds ``flowing_w`` (over the
        # step alone, a register in 10 Wh creeping at 8 W read "120 W" in the 5-min step its
        # unit fell in: field seed 9, FLD0001C), or a power reading at either end shows flow
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_w = prep.de_wh / (_since_last_rise_s(prep) / 3600.0)
        ends_w = np.fmax(prep.power_w[:, 1:], prep.power_w[:, :-1])
        counted &= (mean_w > self.flowing_w) | (ends_w > self.flowing_w)
        e_reg = row_sum(np.where(counted, prep.de_wh, 0.0))
        # power at rest (a few watts of standby and noise) delivers nothing either
        flowing_power = np.where(prep.power_w > self.flowing_w, prep.power_w, 0.0)
        e_pow = row_sum(np.maximum(trapezoid_wh(flowing_power, prep.dt_s), 0.0))
        energy = np.maximum(e_reg, e_pow)
        orphan = _delivering_orphan(batch)
        auth = batch.auth_result
        rejected = ~orphan & ~is_none(auth) & np.not_equal(auth, "Accepted")
        concerned = orphan | rejected
        # the transaction's own meter values (meterStart, meterStop) where the readings hold
        # less: a station sampling every 10-15 min may send one reading or none in a short
        # session (an independently written fleet, seed 133 with --sparse-sampling 0.5: 12.5
        # kWh on an Expired card, one reading, missed); no more than the connector delivers
        # over the session (else a meter fault, meter_jump's)
        by_values = _meter_values_wh(batch, prep, rated) * rejected
        use_values = by_values > energy
        energy = np.maximum(energy, by_values)
        x = np.where(concerned, energy / self.min_energy_wh, 0.0)
        flagged = concerned & (x > 1.0)

        flowing = prep.valid & (prep.power_w > self.flowing_w)
        flowing[:, 1:] |= counted
        m = flowing.shape[1]
        first = np.argmax(flowing, axis=1) if m else np.zeros(batch.n_sessions, np.int64)
        last = m - 1 - np.argmax(flowing[:, ::-1], axis=1) if m else first
        start = pick(prep.t_ns, first).astype(np.int64)
        end = pick(prep.t_ns, last).astype(np.int64)
        start = np.where(use_values, batch.start_ns, start)
        end = np.where(use_values, batch.stop_ns, end)
        peak = row_max(prep.power_w)
        not_scored = np.full(batch.n_sessions, None, dtype=object)
        # without readings, the transaction's meter values still count (a short session on a
        # station sampling every 15 min may hold none: 7.8 kWh on a Blocked card in 12 min,
        # seed 341 with --sparse-sampling 1.0, TX-0161-241250, "not scored")
        no_readings = concerned & (prep.count == 0) & ~use_values
        not_scored[no_readings] = "no readings with a trustworthy time, and no meter values"

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


def _since_last_rise_s(prep: Prepared) -> FloatArray:
    """Per step ``(n, m - 1)``: seconds from the end of the register's last rise before it (or
    the row's first reading) to the step's end."""
    n, m = prep.t_s.shape
    if m < 2:
        return np.zeros((n, 0))
    rose = prep.de_wh > 0
    # the time each rise ended, carried forward to the steps after it
    ended = np.where(rose, prep.t_s[:, 1:], np.nan)
    before = np.concatenate((np.zeros((n, 1)), forward_fill(ended)[:, :-1]), axis=1)
    before = np.where(np.isnan(before), 0.0, before)
    return np.asarray(prep.t_s[:, 1:] - before)


def _meter_values_wh(batch: SessionBatch, prep: Prepared, rated: FloatArray) -> FloatArray:
    """Per row: meterStop - meterStart where both are known and the session's start and stop
    too, and the rise is no more than the connector delivers over the session
    (``meter_values_allowance_wh``, meter_jump's bound); else 0."""
    rise = batch.meter_stop_wh - batch.meter_start_wh
    known = (batch.start_ns != NO_TIME) & (batch.stop_ns != NO_TIME) & (rise > 0)
    rows = np.flatnonzero(known)
    out = np.zeros(batch.n_sessions)
    if rows.size:
        most = meter_values_allowance_wh(batch, prep, rated, rows)
        out[rows] = np.where(rise[rows] <= most, rise[rows], 0.0)  # NaN rating: no
    return out


def _delivering_orphan(batch: SessionBatch) -> BoolArray:
    """Orphan segments of a real connector. Connector 0 is the station itself (OCPP 1.6: its
    main energy meter, whose clock-aligned readings rise with every connector's sessions;
    2.0.1: EVSE 0): no session is ever open on it, so its energy is no one's to authorize."""
    return is_none(batch.session_id) & np.not_equal(batch.connector_id, 0)


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


# Stations keep their clocks from the central system's (OCPP BootNotification and Heartbeat
# answers carry its time), so two stations differ by seconds between those syncs; a real-time
# clock drifts about 2 s a day. Two sessions of one card that overlap by more than this (plus
# the stamps' own unit, whole minutes on some stations) did overlap. An independently written
# fleet's drivers moving to the next charger overlapped by 26-54 s, some with a stop stamped in
# whole minutes; a 60 s threshold missed 9 of 439 such labels over 6 seeds.
CLOCK_SKEW_S = 10.0


class ConcurrentIdTag(BaseDetector):
    """One id tag (pseudonym) in two sessions that overlap in time at different stations; both
    sessions are flagged (CONTRACTS.md section 3), each naming the partner it overlaps most.
    Pairs sessions across rows (``per_row`` False); takes the stations' sites and coordinates,
    and the fleet cards, from the station metadata of the history it is fitted on
    (``ratings.with_stations``; ``stations_``).

    Every session is compared with every session of its pseudonym that overlaps it: sorted by
    (pseudonym, start), the sessions that start before one ends are a contiguous run after it
    (``searchsorted``), so all overlapping pairs come out as arrays (in blocks of bounded size),
    and each session keeps its worst pair by ``np.maximum.at`` reductions (never a fancy-index
    write, where a repeated index keeps only the last value).

    The flag says what kind of overlap it is, and the score follows: at one site for less
    than ``same_site_move_s`` it is most likely a driver moving to the next charger (score
    lowered); at places so far apart that the card would have had to travel faster than
    ``max_travel_kmh`` between the two starts, one card cannot be at both (a cloned card or
    shared credentials). A pseudonym marked as a fleet card has its score lowered too, and the
    flag says so.

    Parameters
    ----------
    min_overlap_s : float, default CLOCK_SKEW_S (10.0)
        Two stations' clocks may make back-to-back sessions touch by a few seconds; the
        stamps' unit is added to it, pair by pair: one unit of the later session's (a start
        truncated to its minute may seem to begin before the other session's stop), or half a
        unit of the earlier one's if more (a stop rounded to the nearest minute).
    same_site_move_s : float, default 900.0
        A driver who moves the car to the next charger starts the new session before the old
        one's stop arrives: the unplug is reported at once by most chargers, but some end the
        transaction only on a time-out or the card shown again, within minutes. A quarter of an
        hour covers re-parking and those time-outs; longer, two cars charge at once.
    max_travel_kmh : float, default 200.0
        Faster than any door-to-door road journey averages (motorway trips average well under
        150 km/h even where there is no limit): above it one card cannot have been carried from
        one station to the other between the two starts. Each start's clock may be off by
        the pair's least overlap, which is added to the gap, so stations a few km apart never
        count.
    """

    kind = AnomalyKind.CONCURRENT_ID_TAG
    per_row = False

    def __init__(
        self,
        *,
        min_overlap_s: float = CLOCK_SKEW_S,
        same_site_move_s: float = 900.0,
        max_travel_kmh: float = 200.0,
    ) -> None:
        self.min_overlap_s = min_overlap_s
        self.same_site_move_s = same_site_move_s
        self.max_travel_kmh = max_travel_kmh

    def fit(self, batch: SessionBatch) -> Self:
        self.stations_ = stations_of(batch)
        return super().fit(batch)

    def score(self, batch: SessionBatch, *, now_ns: int) -> KindResult:
        self.check_is_fitted()
        n = batch.n_sessions
        user = batch.id_pseudonym
        judged = ~is_none(user) & ~is_none(batch.session_id)
        judged &= batch.start_ns != NO_TIME
        end = session_ends(batch, now_ns)
        # ties broken by session id, so no choice depends on the order of the rows
        _, sid_rank = np.unique(batch.session_id.astype(str), return_inverse=True)
        places = _Places.of(batch, self.stations_)
        ends = np.stack((batch.start_ns, batch.stop_ns), axis=1)
        resolution_s = time_resolution_s(ends, ends != NO_TIME)
        best = _Best.empty(n)
        rows = np.flatnonzero(judged)
        for pairs in self._pairs(batch, rows, end, sid_rank, places, resolution_s):
            best = best.merge(_worst_pairs(pairs, n, sid_rank))
        fleet = self.stations_.is_fleet(user) & judged
        flagged = judged & (best.partner >= 0)
        overlap_score = excess_score(best.any_overlap_s / self.min_overlap_s)
        score = np.where(flagged, best.pair_score, overlap_score)
        score = np.where(fleet, score * FLEET_FACTOR, score)
        p = np.where(best.partner >= 0, best.partner, 0)
        ov_start = np.maximum(batch.start_ns, batch.start_ns[p])
        ov_end = np.minimum(end, end[p])
        not_scored = np.full(n, None, dtype=object)
        not_scored[is_none(user)] = "no id tag"
        not_scored[is_none(batch.session_id)] = "readings outside any session"

        def describe(rows: np.ndarray) -> list[str]:
            return [self._reason(batch, best, fleet, int(i)) for i in rows]

        return build_result(
            self.kind,
            score,
            flagged,
            ov_start.astype(np.int64),
            ov_end.astype(np.int64),
            describe,
            not_scored,
        )

    def _pairs(
        self,
        batch: SessionBatch,
        rows: IntArray,
        end: IntArray,
        sid_rank: IntArray,
        places: _Places,
        resolution_s: FloatArray,
    ) -> Iterator[_Pairs]:
        """Every pair of ``rows`` with one pseudonym that overlap in time at two stations, in
        blocks of at most ``MAX_PAIRS`` (one id tag shared by a whole network, as free-vend
        chargers send, makes pairs by the square of its sessions)."""
        if rows.size < 2:
            return
        _, group = np.unique(batch.id_pseudonym[rows].astype(str), return_inverse=True)
        by_user = np.lexsort((sid_rank[rows], batch.start_ns[rows], group))
        order, g = rows[by_user], group[by_user].astype(np.float64)
        t_ref = int(batch.start_ns[rows].min())
        start_s = (batch.start_ns[order] - t_ref) / NS_PER_S
        end_s = np.maximum((end[order] - t_ref) / NS_PER_S, start_s)
        # users laid end to end on one time axis, further apart than any session lasts, so one
        # searchsorted finds, for each session, the later sessions of its user that start
        # before it ends: they overlap it
        span = float(end_s.max() - start_s.min()) + 1.0
        keyed_start = g * span + start_s
        after = np.searchsorted(keyed_start, g * span + end_s, side="left")
        count = np.maximum(after - np.arange(order.size) - 1, 0)
        total = np.cumsum(count)
        # sessions [lo, hi) of the sorted order make one block of pairs
        cuts = np.searchsorted(total, np.arange(MAX_PAIRS, int(total[-1]), MAX_PAIRS), "left")
        bounds = np.unique(np.concatenate(([0], cuts + 1, [order.size])))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            c = count[lo:hi]
            first = lo + np.repeat(np.arange(hi - lo), c)
            offset = np.arange(first.size) - np.repeat(np.cumsum(c) - c, c)
            second = first + 1 + offset
            a, b = order[first], order[second]
            overlap_s = np.minimum(end_s[first], end_s[second]) - start_s[second]
            keep = (places.station[a] != places.station[b]) & (overlap_s > 0)
            gap_s = start_s[second[keep]] - start_s[first[keep]]
            a, b = a[keep], b[keep]  # b starts later
            # the later start truncated to its unit may seem up to one unit early; the earlier
            # stop, truncated, only hides overlap, unless it was rounded to the nearest unit
            least_s = self.min_overlap_s + np.maximum(resolution_s[b], 0.5 * resolution_s[a])
            yield self._judge_pairs(places, a, b, overlap_s[keep], gap_s, least_s)

    def _judge_pairs(
        self,
        places: _Places,
        a: IntArray,
        b: IntArray,
        overlap_s: FloatArray,
        gap_s: FloatArray,
        least_s: FloatArray,
    ) -> _Pairs:
        """Where each pair's stations are from each other, and what that makes its score
        (``least_s``: the least overlap that counts, per pair)."""
        same_site = (places.site[a] >= 0) & (places.site[a] == places.site[b])
        distance_km = haversine_km(places.lat[a], places.lon[a], places.lat[b], places.lon[b])
        speed_kmh = distance_km / ((gap_s + least_s) / 3600.0)
        far = ~same_site & (speed_kmh > self.max_travel_kmh)  # NaN (no coordinates): False
        move = same_site & (overlap_s < self.same_site_move_s)
        x = overlap_s / least_s
        pair_score = excess_score(x) * np.where(move, SAME_SITE_MOVE_FACTOR, 1.0)
        qualifies = x > 1.0
        return _Pairs(
            a, b, overlap_s, pair_score, qualifies, same_site, move, far, distance_km, speed_kmh
        )

    def _reason(self, batch: SessionBatch, best: _Best, fleet: np.ndarray, i: int) -> str:
        pair = best.chosen  # row-aligned: row i's worst pair
        other = int(best.partner[i])
        text = (
            f"the same id tag was in use at station {batch.station_id[other]} "
            f"(session {batch.session_id[other]}) at the same time, overlapping by "
            f"{fmt_span(float(pair.overlap_s[i]))}"
        )
        site = self.stations_.sites(batch.station_id[[i]])[0]
        if pair.same_site[i]:
            text += f", at the same site {site}"
            if pair.move[i]:
                text += ": most likely a driver moving to the next charger"
        elif pair.far[i]:
            text += (
                f", {pair.distance_km[i]:.0f} km away: {pair.speed_kmh[i]:.0f} km/h between "
                f"the two starts, faster than any road journey ({self.max_travel_kmh:.0f} km/h),"
                " so one card cannot be at both (a cloned card or shared credentials)"
            )
        elif not np.isnan(pair.distance_km[i]):
            text += (
                f", at another site {pair.distance_km[i]:.1f} km away "
                f"(reachable: {pair.speed_kmh[i]:.0f} km/h between the two starts)"
            )
        elif site is not None:
            text += ", at another site"
        else:
            text += " (no site known for the stations: import them to tell a move from a clone)"
        more = int(best.partners[i]) - 1
        if more > 0:
            text += f"; it overlaps {more} more session{'s' if more > 1 else ''} of this id tag"
        if fleet[i]:
            text += "; the id tag is marked as a fleet card (several vehicles), score lowered"
        return text


# A same-site move is normal driver behaviour that the contract still counts: keep it visible,
# at well under the score of an unexplained overlap (0.5 at the threshold becomes 0.2).
SAME_SITE_MOVE_FACTOR = 0.4
# A fleet card is shared on purpose; its overlaps are expected, though a fleet card can be
# cloned too: half the score.
FLEET_FACTOR = 0.5
# Pairs judged at once: a few tens of MB of temporaries, whatever one id tag's sessions make.
MAX_PAIRS = 1 << 20


class _Places(NamedTuple):
    """Per row: its station and site as small ints (site -1: unknown), its coordinates (NaN:
    unknown), looked up once so that pairs only index them."""

    station: IntArray
    site: IntArray
    lat: FloatArray
    lon: FloatArray

    @classmethod
    def of(cls, batch: SessionBatch, meta: StationMetadata) -> _Places:
        n = batch.n_sessions
        _, station = np.unique(batch.station_id.astype(str), return_inverse=True)
        sites = meta.sites(batch.station_id)
        known = ~is_none(sites)
        site = np.full(n, -1, dtype=np.int64)
        if known.any():
            site[known] = np.unique(sites[known].astype(str), return_inverse=True)[1]
        lat, lon = meta.coordinates(batch.station_id)
        return cls(station.astype(np.int64), site, lat, lon)


@dataclass(frozen=True, slots=True)
class _Pairs:
    """Overlapping pairs of sessions (rows ``a`` and ``b`` of the batch), one entry a pair."""

    a: IntArray
    b: IntArray
    overlap_s: FloatArray
    pair_score: FloatArray
    qualifies: np.ndarray  # overlap above min_overlap_s
    same_site: np.ndarray
    move: np.ndarray  # a short overlap at one site
    far: np.ndarray  # too far apart for one card
    distance_km: FloatArray  # NaN when a station has no coordinates
    speed_kmh: FloatArray

    @classmethod
    def none(cls) -> _Pairs:
        i, f, b = np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
        return cls(i, i, f, f, b, b, b, b, f, f)


@dataclass(frozen=True, slots=True)
class _Best:
    """Per row of the batch: its worst qualifying pair so far (``chosen``, row-aligned: ``b`` is
    the partner, -1 when none), how many qualifying partners it has, its longest overlap of any
    length, and the partner's rank by session id (ties)."""

    chosen: _Pairs
    partners: IntArray
    any_overlap_s: FloatArray
    partner_rank: IntArray

    @property
    def partner(self) -> IntArray:
        return self.chosen.b

    @property
    def pair_score(self) -> FloatArray:
        return self.chosen.pair_score

    @classmethod
    def empty(cls, n: int) -> _Best:
        f, b = np.zeros(n), np.zeros(n, bool)
        none = np.full(n, -1, dtype=np.int64)
        chosen = _Pairs(np.arange(n), none, f, f, b, b, b, b, f, f)
        return cls(chosen, np.zeros(n, np.int64), np.zeros(n), none)

    def merge(self, new: _Best) -> _Best:
        """The worse of the two per row (see ``_worst_pairs``), partners and overlaps combined."""
        old, c_old, c_new = self, self.chosen, new.chosen
        tie_score = c_new.pair_score == c_old.pair_score
        tie_overlap = tie_score & (c_new.overlap_s == c_old.overlap_s)
        worse = (
            (c_new.pair_score > c_old.pair_score)
            | (tie_score & (c_new.overlap_s > c_old.overlap_s))
            | (tie_overlap & (new.partner_rank < old.partner_rank))
        )
        take = (c_new.b >= 0) & ((c_old.b < 0) | worse)
        fields = [np.where(take, getattr(c_new, f), getattr(c_old, f)) for f in _Pairs.__slots__]
        return _Best(
            _Pairs(*fields),
            old.partners + new.partners,
            np.fmax(old.any_overlap_s, new.any_overlap_s),
            np.where(take, new.partner_rank, old.partner_rank),
        )


def _worst_pairs(pairs: _Pairs, n: int, sid_rank: IntArray) -> _Best:
    """Each row's worst pair, over both ends of every pair: highest pair score first, then the
    longest overlap, then the partner's session id (a stable choice). A reduction per key
    (``np.maximum.at``: every write of a repeated row counts, unlike ``a[idx] = v``), each
    keeping the pairs that reach the row's best, so one pair per row remains."""
    best = _Best.empty(n)
    any_overlap = best.any_overlap_s
    me = np.concatenate((pairs.a, pairs.b))
    other = np.concatenate((pairs.b, pairs.a))
    index = np.concatenate((np.arange(pairs.a.size), np.arange(pairs.a.size)))
    np.maximum.at(any_overlap, me, pairs.overlap_s[index])
    ok = pairs.qualifies[index]
    me, other, index = me[ok], other[ok], index[ok]
    if not me.size:
        return best
    partners = np.bincount(me, minlength=n).astype(np.int64)
    # highest score, then longest overlap, then lowest partner session id
    for stage in range(3):
        if stage == 0:
            key = pairs.pair_score[index]
        elif stage == 1:
            key = pairs.overlap_s[index]
        else:
            key = -sid_rank[other].astype(np.float64)
        top = np.full(n, -np.inf)
        np.maximum.at(top, me, key)
        keep = key == top[me]
        me, other, index = me[keep], other[keep], index[keep]
    rows, chosen = me, index
    fields = []
    for name in _Pairs.__slots__:
        column = getattr(best.chosen, name).copy()
        column[rows] = getattr(pairs, name)[chosen]
        fields.append(column)
    picked = _Pairs(*fields)
    partner = np.full(n, -1, dtype=np.int64)
    partner[rows] = other
    picked = replace(picked, a=np.arange(n), b=partner)
    rank = np.where(partner >= 0, sid_rank[np.maximum(partner, 0)], -1)
    return _Best(picked, partners, any_overlap, rank)
