"""``GET /api/v1/scores``: every kind's score per session, from the session catalogue, for
ranking sessions by one kind and for data scientists reading scores in bulk.

Without ``kind``, sessions come newest first; with it, ranked by that kind's score, highest
first, leaving out sessions it did not score (``min_score`` keeps the top).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from api.deps import require, unprocessable
from api.query import (
    READ_RESPONSES,
    Identifier,
    PageParams,
    Reads,
    WindowParams,
    answer,
    checked_id,
)
from api.session_schemas import ScoreOut, ScorePage
from chargewatch.kinds import AnomalyKind
from chargewatch.roles import Role

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1",
    tags=["scores"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=READ_RESPONSES,
)


@router.get("/scores", response_model=ScorePage)
def list_scores(
    reads: Reads,
    window: WindowParams,
    page: PageParams,
    station_id: Identifier = None,
    connector_id: Annotated[int | None, Query(ge=0, le=1000)] = None,
    session_id: Annotated[
        str | None,
        Query(
            min_length=1, max_length=128, description="Only this session (the window not applied)."
        ),
    ] = None,
    kind: Annotated[
        AnomalyKind | None, Query(description="Rank by this kind's score, highest first.")
    ] = None,
    min_score: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="With `kind`: only scores this high.")
    ] = None,
) -> Response:
    """Every kind's score of each session that started in the window."""
    if min_score is not None and kind is None:
        raise unprocessable("min_score", "needs kind: the kind whose score to compare")
    wanted = checked_id(session_id, "session_id")
    if wanted is not None:
        row = reads.session_row(wanted)
        return answer(ScorePage(items=[] if row is None else [ScoreOut.of(row)], next_cursor=None))
    station = checked_id(station_id, "station_id")
    if kind is None:
        rows, cursor = reads.sessions(
            since_ns=window.since_ns,
            until_ns=window.until_ns,
            station_id=station,
            connector_id=connector_id,
            pseudonym=None,
            kinds=None,
            flagged_only=False,
            after=page.cursor,
            limit=page.limit,
        )
    else:
        rows, cursor = reads.ranked(
            kind.value,
            since_ns=window.since_ns,
            until_ns=window.until_ns,
            station_id=station,
            connector_id=connector_id,
            min_score=min_score,
            after=page.cursor,
            limit=page.limit,
        )
    return answer(ScorePage(items=[ScoreOut.of(row) for row in rows], next_cursor=cursor))
