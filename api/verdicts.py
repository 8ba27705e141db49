"""``POST /api/v1/flags/{flag}/verdict``: an operator says whether a flag was right.

The body, ``{"verdict": "confirmed" | "false_alarm" | "wrong_kind", "kind": ..., "comment":
..., "who": ...}``, is read by the route itself, at most ``MAX_BODY_BYTES``, so that no
client makes the service hold more than a verdict's worth of bytes (FastAPI would read any
body whole before a single check ran). It is validated strictly: no other field, no type
coerced, ``kind`` (the right anomaly kind) required for ``wrong_kind`` and refused otherwise;
each refusal names its field, as every refusal of the API does (``body.kind: ...``).

``{flag}`` is the flag's id as ``GET /api/v1/flags`` shows it (``chargewatch.verdicts``). A
flag may be judged again: every verdict is kept, the latest is the flag's verdict. Operators
and admins may post; the verdict is stored with the public part of the key that posted it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from api.deps import ApiServices, Bearer, KeyHeader, Services, presented_key, require
from api.query import READ_RESPONSES, Problem, Utc, utc
from api.reading import read_limited
from chargewatch.catalog import SessionRow
from chargewatch.kinds import AnomalyKind
from chargewatch.roles import Role
from chargewatch.state import api_key_id
from chargewatch.verdicts import (
    MAX_COMMENT_CHARS,
    MAX_FLAG_ID_CHARS,
    MAX_WHO_CHARS,
    FlagVerdict,
    Verdict,
    VerdictDesk,
    parse_flag_id,
    session_flag_id,
)

__all__ = ["MAX_BODY_BYTES", "VerdictIn", "VerdictOut", "latest_of_session", "router"]

# The largest valid body: every character of the comment and of who escaped as \uXXXX (6
# bytes), the other fields and the braces well under 1 KiB: 12,768 + 1,024 < 16 KiB.
MAX_BODY_BYTES = 16 * 1024

router = APIRouter(prefix="/api/v1", tags=["flags"])


class VerdictIn(BaseModel):
    """An operator's verdict on one flag."""

    model_config = ConfigDict(extra="forbid", strict=True)

    verdict: Verdict = Field(
        description="`confirmed`: the anomaly is there, of the flag's kind; `false_alarm`: the "
        "session was normal for that kind; `wrong_kind`: an anomaly of another kind, named in "
        "`kind`"
    )
    kind: AnomalyKind | None = Field(
        default=None,
        validate_default=True,
        description="the right anomaly kind: required with `wrong_kind`, refused otherwise",
    )
    comment: str = Field(
        default="",
        max_length=MAX_COMMENT_CHARS,
        description="what was seen (no personal data: every API key may read it)",
    )
    who: str = Field(min_length=1, max_length=MAX_WHO_CHARS, description="who judged")

    @field_validator("kind")
    @classmethod
    def _kind_with_wrong_kind(
        cls, kind: AnomalyKind | None, info: ValidationInfo
    ) -> AnomalyKind | None:
        verdict = info.data.get("verdict")
        if verdict is Verdict.WRONG_KIND and kind is None:
            raise ValueError("is required with wrong_kind: the anomaly kind the flag should have")
        if verdict is not None and verdict is not Verdict.WRONG_KIND and kind is not None:
            raise ValueError(f"goes only with wrong_kind, not with {verdict.value}")
        return kind

    @field_validator("who")
    @classmethod
    def _who_printable(cls, who: str) -> str:
        if who.isspace():
            raise ValueError("must not be blank")
        if not who.isprintable():
            raise ValueError("contains control characters")
        return who

    @field_validator("comment")
    @classmethod
    def _comment_text(cls, comment: str) -> str:
        if not comment.replace("\n", " ").replace("\t", " ").isprintable():
            raise ValueError("contains control characters (line breaks and tabs are fine)")
        return comment


class VerdictOut(BaseModel):
    """A verdict as stored."""

    verdict: Verdict
    kind: AnomalyKind | None = Field(description="the right kind, for `wrong_kind`; else null")
    comment: str
    who: str
    at: Utc = Field(description="when it was posted")

    @classmethod
    def of(cls, judged: FlagVerdict) -> VerdictOut:
        return cls(
            verdict=judged.verdict,
            kind=None if judged.right_kind is None else AnomalyKind(judged.right_kind),
            comment=judged.comment,
            who=judged.who,
            at=utc(int(judged.at.timestamp() * 1_000_000) * 1000),
        )


class VerdictAnswer(BaseModel):
    flag_id: str
    verdict: VerdictOut = Field(description="the verdict just stored: the flag's verdict now")
    verdicts: int = Field(description="how many verdicts the flag has had, this one included")


def latest_of_session(svc: ApiServices, row: SessionRow) -> dict[str, FlagVerdict]:
    """The latest verdict on each flag of a catalogued session, by flag id (one query)."""
    ids = [
        session_flag_id(row.station_id, row.connector_id, v.kind, row.session_id)
        for v in row.verdicts
        if v.flagged
    ]
    return svc.verdicts.latest(ids) if svc.verdicts is not None and ids else {}


def _request_body_schema() -> dict[str, Any]:
    """``VerdictIn``'s JSON schema with its definitions inlined (the route reads its body
    itself, so FastAPI does not document it)."""
    schema = VerdictIn.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _request_body_schema()}},
    }
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **READ_RESPONSES,
    403: {"model": Problem, "description": "the key's role may not judge flags (operator+)"},
    404: {"model": Problem, "description": "no stored flag has this id"},
    413: {"model": Problem, "description": f"the body is larger than {MAX_BODY_BYTES} bytes"},
    415: {"model": Problem, "description": "the body is not sent as application/json"},
    422: {"model": Problem, "description": "the id or a field of the body is invalid (named)"},
}
FlagId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_FLAG_ID_CHARS,
        description="the flag's `id`, as `GET /api/v1/flags` shows it",
    ),
]


async def _desk(svc: Services) -> VerdictDesk:
    if svc.verdicts is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "verdicts are not configured")
    return svc.verdicts


Desk = Annotated[VerdictDesk, Depends(_desk)]


@router.post(
    "/flags/{flag}/verdict",
    status_code=status.HTTP_201_CREATED,
    response_model=VerdictAnswer,
    responses=_RESPONSES,
    openapi_extra=_OPENAPI,
)
async def post_verdict(
    request: Request,
    flag: FlagId,
    desk: Desk,
    svc: Services,
    _role: Annotated[Role, Depends(require(Role.OPERATOR))],
    bearer: Bearer,
    key_header: KeyHeader,
) -> VerdictAnswer:
    """Judge a flag: confirmed, a false alarm, or of the wrong kind (naming the right one).
    A flag judged again keeps every verdict; the latest is its verdict."""
    try:
        key = parse_flag_id(flag)
    except ValueError as exc:
        raise HTTPException(422, f"flag: {exc}") from None
    body = _parse(await _read_body(request, svc.body_timeout_s))
    found = await run_in_threadpool(desk.find, key)
    if found is None:
        raise HTTPException(
            404, "flag: no stored flag has this id (a later detection run may have withdrawn it)"
        )
    if body.kind is not None and body.kind.value == found.kind:
        raise HTTPException(
            422, f"body.kind: is the flag's own kind ({found.kind}); that verdict is confirmed"
        )
    posted_with = presented_key(bearer, key_header)  # the key the request was admitted with
    stored = await run_in_threadpool(
        lambda: desk.record(
            found,
            body.verdict,
            right_kind=None if body.kind is None else body.kind.value,
            comment=body.comment,
            who=body.who,
            key_id=api_key_id(posted_with),
        )
    )
    count = len(await run_in_threadpool(desk.history, stored.flag_id))
    return VerdictAnswer(flag_id=stored.flag_id, verdict=VerdictOut.of(stored), verdicts=count)


async def _read_body(request: Request, grace_s: float) -> bytes:
    """The body, at most ``MAX_BODY_BYTES`` (413 beyond, before reading more), as JSON."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if media.lower() != "application/json":
        raise HTTPException(
            415, f"body: send JSON (Content-Type application/json), not {media[:40]!r}"
        )
    parts = await read_limited(request, limit=MAX_BODY_BYTES, grace_s=grace_s, route="verdict")
    return b"".join(parts)


def _parse(raw: bytes) -> VerdictIn:
    """The verdict of a body; 422 naming each bad field, as the API's other refusals do. A key
    given twice is refused: which of the two a reader takes differs from parser to parser."""
    repeated = _repeated_key(raw)
    if repeated is not None:
        raise HTTPException(422, f"body.{repeated}: is given more than once")
    try:
        return VerdictIn.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(['body', *(str(p) for p in err['loc'])])}: {err['msg']}"
            for err in exc.errors()
        )
        raise HTTPException(422, problems) from None


def _repeated_key(raw: bytes) -> str | None:
    """The first key some object of the JSON ``raw`` repeats, or None (also when ``raw`` is no
    JSON: the model's validation says what is wrong with it)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key[:64])
            seen.add(key)
        return dict(items)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    return found[0] if found else None
