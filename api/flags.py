"""``GET /api/v1/flags``: the stored flags (InfluxDB measurement ``flag``) of a window, oldest
first, a page at a time; each one the object of CONTRACTS.md section 4."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from api.deps import Services, require
from api.query import (
    READ_RESPONSES,
    Identifier,
    PageParams,
    Reads,
    Utc,
    WindowParams,
    answer,
    checked_id,
    utc,
)
from api.verdicts import VerdictOut
from chargewatch.flags import Flag
from chargewatch.kinds import AnomalyKind
from chargewatch.roles import Role
from chargewatch.verdicts import FlagVerdict, flag_id

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1",
    tags=["flags"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=READ_RESPONSES,
)


class FlagRecord(BaseModel):
    id: str = Field(description="the flag's stable id: `POST /flags/{id}/verdict` judges it")
    session_id: str | None = Field(description="null for energy outside any session")
    station_id: str
    connector_id: int
    kind: str
    score: float = Field(ge=0.0, le=1.0)
    start: Utc = Field(description="where the anomaly shows")
    end: Utc
    reason: str = Field(description="the evidence, with its numbers")
    verdict: VerdictOut | None = Field(
        description="an operator's latest verdict on the flag; null: none yet"
    )

    @classmethod
    def of(cls, flag: Flag, verdicts: dict[str, FlagVerdict]) -> FlagRecord:
        ident = flag_id(flag)
        judged = verdicts.get(ident)
        return cls(
            id=ident,
            session_id=flag.session_id,
            station_id=flag.station_id,
            connector_id=flag.connector_id,
            kind=flag.kind,
            score=flag.score,
            start=utc(flag.start_ns),
            end=utc(flag.end_ns),
            reason=flag.reason,
            verdict=None if judged is None else VerdictOut.of(judged),
        )


class FlagPageOut(BaseModel):
    items: list[FlagRecord]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


@router.get("/flags", response_model=FlagPageOut)
def list_flags(
    reads: Reads,
    svc: Services,
    window: WindowParams,
    page: PageParams,
    station_id: Identifier = None,
    connector_id: Annotated[int | None, Query(ge=0, le=1000)] = None,
    kind: Annotated[list[AnomalyKind] | None, Query(description="Only these kinds.")] = None,
    session_id: Annotated[
        str | None, Query(min_length=1, max_length=128, description="Only this session's.")
    ] = None,
) -> Response:
    """Flags whose anomaly starts in the window, oldest first."""
    found = reads.flags(
        since_ns=window.since_ns,
        until_ns=window.until_ns,
        station_id=checked_id(station_id, "station_id"),
        connector_id=connector_id,
        kinds=None if kind is None else [k.value for k in kind],
        session_id=checked_id(session_id, "session_id"),
        after=page.cursor,
        limit=page.limit,
    )
    ids = [flag_id(f) for f in found.flags]
    verdicts = {} if svc.verdicts is None or not ids else svc.verdicts.latest(ids)
    items = [FlagRecord.of(f, verdicts) for f in found.flags]
    return answer(FlagPageOut(items=items, next_cursor=found.next_cursor))
