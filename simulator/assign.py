"""Fleet-wide decisions: which sessions carry which anomaly, and whose card each session uses.

Each anomaly kind is placed by its injector (``injectors/``): anomalies that change the physics
(a stall, a derating) are written into the session plan here, the others are applied later to
the readings. Cards are handed out so that no card is ever in two places at once, except for
the pairs chosen for ``concurrent_id_tag``.
"""

from __future__ import annotations

import math

import numpy as np

from chargewatch.kinds import AnomalyKind

from .config import ANOMALY_KINDS
from .fleet import make_id_tags
from .injectors import INJECTORS, FleetSessions
from .planning import MINUTE_MS, StationPlan


def assign_anomalies(
    plans: list[StationPlan],
    start_ms: int,
    end_ms: int,
    rate: float,
    rng: np.random.Generator,
) -> None:
    """Choose about ``rate`` x sessions anomalies, the kinds in turn, and set them up."""
    fleet = FleetSessions(plans, start_ms, end_ms)
    wanted = round(rate * len(fleet.sessions))
    kinds: list[str] = []
    while len(kinds) < wanted:
        kinds.extend(rng.permutation(ANOMALY_KINDS).tolist())
    for kind in kinds[:wanted]:
        INJECTORS[AnomalyKind(kind)].assign(fleet, rng)


def assign_id_tags(plans: list[StationPlan], pool: list[str], rng: np.random.Generator) -> None:
    """Give every session a card from the pool; one card is never in two places at once.

    A few users charge often (fleet cards, taxis), most rarely. A card is free again 30 min after
    its previous session's latest departure. The second session of a concurrent pair takes the
    first one's card, which is then held for both.
    """
    sessions = sorted((s for p in plans for s in p.sessions), key=lambda s: s.arrival_ms)
    by_id = {s.session_id: s for s in sessions}
    weights = 1.0 / (np.arange(len(pool)) + 8.0) ** 0.7
    weights /= weights.sum()
    draws = iter(rng.choice(len(pool), size=len(sessions) * 8 + 64, p=weights).tolist())
    free_at = np.full(len(pool), -math.inf)
    for s in sessions:
        partner = by_id.get(s.partner) if s.partner else None
        if partner is not None and partner.arrival_ms < s.arrival_ms:
            s.id_tag = partner.id_tag
            continue
        busy_until = max(s.departure_ms, partner.departure_ms if partner else 0)
        user = next((u for u in (next(draws) for _ in range(8)) if free_at[u] <= s.arrival_ms), -1)
        if user < 0:  # the popular cards are all out: take any free one
            free = np.flatnonzero(free_at <= s.arrival_ms)
            user = int(free[rng.integers(len(free))]) if free.size else len(pool)
        if user == len(pool):  # every card is out: a new user joins
            pool.append(make_id_tags(1, rng)[0])
            free_at = np.append(free_at, -math.inf)
        free_at[user] = busy_until + 30 * MINUTE_MS
        s.id_tag = pool[user]
