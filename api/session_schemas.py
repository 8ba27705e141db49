"""The public form of sessions, their profiles and scores: output schemas built from the read
model's values (never those values themselves). Times are RFC 3339 UTC with a Z; energy in Wh,
power in W, durations in seconds; a figure that could not be computed is null."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from api.query import Utc, utc
from api.verdicts import VerdictOut
from chargewatch.catalog import KindVerdict, SessionRow
from chargewatch.readmodel import ProfileGrid, Segment, SegmentKind, SessionDetail, TaperOnset
from chargewatch.verdicts import FlagVerdict, session_flag_id

__all__ = [
    "ProfileOut",
    "ScoreOut",
    "ScorePage",
    "SessionDetailOut",
    "SessionOut",
    "SessionPage",
]


class EnergyOut(BaseModel):
    register_wh: float | None = Field(description="last register reading less the first")
    integrated_power_wh: float | None = Field(description="power integrated over the readings")


class BillingOut(BaseModel):
    confidence: float | None = Field(
        ge=0.0,
        le=1.0,
        description="1: the meter data leaves no doubt; null: unverifiable, nothing could check "
        "the register (no power values, or too few to tell 15 % apart; the reasons say which)",
    )
    reasons: list[str] = Field(description="why the confidence is below 1, with the numbers")


class SessionOut(BaseModel):
    session_id: str
    station_id: str
    connector_id: int
    start: Utc
    stop: Utc | None = Field(description="null while the session is open")
    open: bool
    duration_s: float = Field(description="start to stop, or to the last reading while open")
    user_pseudonym: str | None = Field(description="the id tag's pseudonym (never the tag)")
    energy: EnergyOut
    billing: BillingOut
    flagged_kinds: list[str] = Field(description="the anomaly kinds that flagged the session")
    judged_at: Utc = Field(description="when detection last judged the session")

    @classmethod
    def of(cls, row: SessionRow) -> SessionOut:
        return cls(**_session_fields(row))


def _session_fields(row: SessionRow) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "station_id": row.station_id,
        "connector_id": row.connector_id,
        "start": utc(row.start_ns),
        "stop": None if row.stop_ns is None else utc(row.stop_ns),
        "open": row.stop_ns is None,
        "duration_s": row.duration_s,
        "user_pseudonym": row.id_pseudonym,
        "energy": EnergyOut(
            register_wh=row.energy_register_wh, integrated_power_wh=row.energy_power_wh
        ),
        "billing": BillingOut(confidence=row.billing_confidence, reasons=list(row.billing_notes)),
        "flagged_kinds": list(row.flagged_kinds),
        "judged_at": utc(row.updated_at_ns),
    }


class SessionPage(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class SegmentOut(BaseModel):
    kind: SegmentKind = Field(
        description="charging; suspended_ev: paused by the car; suspended_evse: paused by the "
        "charger (or offered nothing); idle: plugged in after charging ended for good"
    )
    start: Utc
    end: Utc
    duration_s: float

    @classmethod
    def of(cls, segment: Segment) -> SegmentOut:
        return cls(
            kind=segment.kind,
            start=utc(segment.start_ns),
            end=utc(segment.end_ns),
            duration_s=(segment.end_ns - segment.start_ns) / 1e9,
        )


class TaperOut(BaseModel):
    time: Utc
    offset_s: float = Field(description="since the session's start")
    soc_pct: float | None

    @classmethod
    def of(cls, onset: TaperOnset) -> TaperOut:
        return cls(time=utc(onset.time_ns), offset_s=onset.offset_s, soc_pct=onset.soc_pct)


class FlagOut(BaseModel):
    id: str = Field(description="the flag's id, as `GET /api/v1/flags` shows it")
    kind: str
    score: float | None = Field(ge=0.0, le=1.0)
    start: Utc = Field(description="where the anomaly shows")
    end: Utc
    reason: str = Field(description="the evidence, with its numbers")
    verdict: VerdictOut | None = Field(description="an operator's latest verdict; null: none")


class LinksOut(BaseModel):
    profile: str
    profile_png: str


class SessionDetailOut(SessionOut):
    segments: list[SegmentOut] = Field(description="the session's stretches, in time order")
    taper_onset: TaperOut | None = Field(
        description="where power left its plateau for good; null when it never did"
    )
    flags: list[FlagOut] = Field(description="every flag on the session, with its evidence")
    scores: dict[str, float | None] = Field(
        description="every kind's score in [0, 1], higher is more abnormal; null: not scored"
    )
    readings: int = Field(description="readings of the session stored in InfluxDB")
    links: LinksOut

    @classmethod
    def of_detail(
        cls, detail: SessionDetail, base: str, verdicts: dict[str, FlagVerdict] | None = None
    ) -> SessionDetailOut:
        row = detail.row
        return cls(
            **_session_fields(row),
            segments=[SegmentOut.of(s) for s in detail.segments],
            taper_onset=None if detail.taper_onset is None else TaperOut.of(detail.taper_onset),
            flags=[_flag(row, v, verdicts or {}) for v in row.verdicts if v.flagged],
            scores={v.kind: v.score for v in row.verdicts},
            readings=detail.readings,
            links=LinksOut(profile=f"{base}/profile", profile_png=f"{base}/profile.png"),
        )


def _flag(row: SessionRow, verdict: KindVerdict, judged: dict[str, FlagVerdict]) -> FlagOut:
    start = verdict.start_ns if verdict.start_ns is not None else 0
    end = verdict.end_ns if verdict.end_ns is not None else start
    ident = session_flag_id(row.station_id, row.connector_id, verdict.kind, row.session_id)
    return FlagOut(
        id=ident,
        kind=verdict.kind,
        score=verdict.score,
        start=utc(start),
        end=utc(end),
        reason=verdict.reason or verdict.kind,
        verdict=VerdictOut.of(judged[ident]) if ident in judged else None,
    )


class ProfilePoint(BaseModel):
    time: Utc = Field(description="the start of the step")
    offset_s: float = Field(description="since the session's start")
    power_w: float | None = Field(description="mean over the step")
    power_offered_w: float | None = Field(description="mean over the step")
    soc_pct: float | None = Field(description="mean over the step")
    energy_wh: float | None = Field(
        description="delivered by the step's end: its last register reading less the session's "
        "first; null for a step without one"
    )


class ProfileOut(BaseModel):
    session_id: str
    station_id: str
    connector_id: int
    start: Utc
    stop: Utc | None
    open: bool
    step_s: float = Field(description="the grid's step")
    points: list[ProfilePoint]

    @classmethod
    def of(cls, grid: ProfileGrid) -> ProfileOut:
        row = grid.row
        step_ns = grid.step_s * 1e9
        points = [
            ProfilePoint(
                time=utc(row.start_ns + round(k * step_ns)),
                offset_s=k * grid.step_s,
                power_w=power,
                power_offered_w=offered,
                soc_pct=soc,
                energy_wh=energy,
            )
            for k, (power, offered, soc, energy) in enumerate(
                zip(grid.power_w, grid.power_offered_w, grid.soc_pct, grid.energy_wh, strict=True)
            )
        ]
        return cls(
            session_id=row.session_id,
            station_id=row.station_id,
            connector_id=row.connector_id,
            start=utc(row.start_ns),
            stop=None if row.stop_ns is None else utc(row.stop_ns),
            open=row.stop_ns is None,
            step_s=grid.step_s,
            points=points,
        )


class ScoreOut(BaseModel):
    session_id: str
    station_id: str
    connector_id: int
    start: Utc
    stop: Utc | None
    scores: dict[str, float | None] = Field(
        description="every kind's score in [0, 1], higher is more abnormal; null: not scored"
    )
    flagged_kinds: list[str]

    @classmethod
    def of(cls, row: SessionRow) -> ScoreOut:
        return cls(
            session_id=row.session_id,
            station_id=row.station_id,
            connector_id=row.connector_id,
            start=utc(row.start_ns),
            stop=None if row.stop_ns is None else utc(row.stop_ns),
            scores={v.kind: v.score for v in row.verdicts},
            flagged_kinds=list(row.flagged_kinds),
        )


class ScorePage(BaseModel):
    items: list[ScoreOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")
