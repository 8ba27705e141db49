"""``POST /api/v1/events``: a batch of events as a JSON array or as JSON Lines."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.deps import Services, require
from chargewatch.errors import BackpressureError
from chargewatch.roles import Role

router = APIRouter(prefix="/api/v1", tags=["events"])

RETRY_AFTER_S = 5


class RejectedEventOut(BaseModel):
    """One refused event of a batch: its 0-based index, the field at fault, the reason."""

    index: int
    field: str | None
    reason: str


class EventsAnswer(BaseModel):
    accepted: int
    accepted_by_type: dict[str, int]
    rejected: int
    rejections: list[RejectedEventOut]


@router.post(
    "/events",
    response_model=EventsAnswer,
    responses={
        400: {"description": "the body is not a JSON array nor JSON Lines"},
        413: {"description": "the body is larger than the configured limit"},
        503: {"description": "the spool is full; retry after Retry-After seconds"},
    },
)
async def post_events(
    request: Request, svc: Services, _role: Annotated[Role, Depends(require(Role.OPERATOR))]
) -> EventsAnswer:
    """Accept events (CONTRACTS.md section 1). Each bad event is listed with its 0-based index
    and reason; the others are stored. 2xx means stored durably (spooled to disk)."""
    body = await _read_limited(request, svc.max_body_bytes)
    events = _split(body)
    try:
        outcome = await run_in_threadpool(svc.accept_events, events.valid)
    except BackpressureError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            str(exc),
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    rejections = sorted(
        [RejectedEventOut(index=r.index, field=r.field, reason=r.reason) for r in outcome.rejected]
        + events.invalid,
        key=lambda r: r.index,
    )
    accepted = sum(outcome.accepted_by_type.values())
    return EventsAnswer(
        accepted=accepted,
        accepted_by_type=outcome.accepted_by_type,
        rejected=len(rejections),
        rejections=rejections,
    )


class _Split(BaseModel):
    valid: list[tuple[int, Any]]
    invalid: list[RejectedEventOut]


def _split(body: bytes) -> _Split:
    """A JSON array, or JSON Lines (one event per line; bad lines become rejections)."""
    stripped = body.lstrip()
    if not stripped:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body is empty")
    if stripped.startswith(b"["):
        try:
            array = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"the body is not valid JSON ({exc.msg})"
            ) from None
        if not isinstance(array, list):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "expected a JSON array of events")
        return _Split(valid=list(enumerate(array)), invalid=[])
    valid: list[tuple[int, Any]] = []
    invalid: list[RejectedEventOut] = []
    for index, line in enumerate(line for line in body.split(b"\n") if line.strip()):
        try:
            valid.append((index, orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            invalid.append(
                RejectedEventOut(index=index, field=None, reason=f"not valid JSON ({exc.msg})")
            )
    return _Split(valid=valid, invalid=invalid)


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        413,
        f"the body is larger than {limit} bytes",  # named differently across Starlette versions
    )
