"""Sessions: the catalogue's list, one session with what its readings show, and its profile on a
grid (JSON) and as a picture (PNG).

A session is found by id in the catalogue; its readings are then read from InfluxDB by its
station and connector and its time range. The routes are plain functions, run on worker
threads: the reads block, and the PNG is drawn there, off the event loop, on threads of its own
(``PNG_WORKERS``, with ``PNG_WAITING`` more waiting, then 503), so that pictures never hold up
the JSON routes (the renderer draws one at a time, ``analytics.plots``). A PNG answers with an
ETag (a digest of everything it is drawn from) and ``Cache-Control: no-cache``: a client keeps
it and asks again with ``If-None-Match``, and gets 304 while nothing it shows has changed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)

from api.deps import Services, require
from api.query import (
    READ_RESPONSES,
    Identifier,
    PageParams,
    Problem,
    Reads,
    WindowParams,
    answer,
    checked_id,
)
from api.session_schemas import ProfileOut, SessionDetailOut, SessionOut, SessionPage
from api.verdicts import latest_of_session
from chargewatch.kinds import AnomalyKind
from chargewatch.roles import Role

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1",
    tags=["sessions"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=READ_RESPONSES,
)

T = TypeVar("T")

# Pictures drawn at once (the renderer takes one at a time: a second thread reads the next
# session's readings meanwhile) and waiting; one more gets 503 with Retry-After at once.
PNG_WORKERS = 2
PNG_WAITING = 16
# Pictures one API key has drawn at once; the rest of its pictures wait in its own line.
PNG_PER_KEY = 1
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no session with this id in the catalogue"}
}
SessionId = Annotated[
    str, Path(min_length=1, max_length=128, description="The session's id (OCPP transaction).")
]
StepS = Annotated[
    float | None,
    Query(
        ge=1.0,
        le=3600.0,
        description="The grid's step in seconds (default 60); coarser when the session would "
        "need more than 1440 steps.",
    ),
]


def _not_found(session_id: str) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND, f"session_id: no session {session_id!r} in the catalogue"
    )


@router.get("/sessions", response_model=SessionPage)
def list_sessions(
    reads: Reads,
    window: WindowParams,
    page: PageParams,
    station_id: Identifier = None,
    connector_id: Annotated[int | None, Query(ge=0, le=1000)] = None,
    pseudonym: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            description="Only this user's sessions (an id tag's pseudonym).",
        ),
    ] = None,
    kind: Annotated[
        list[AnomalyKind] | None, Query(description="Only sessions flagged with any of these.")
    ] = None,
    flagged: Annotated[bool, Query(description="Only sessions flagged with any kind.")] = False,
) -> Response:
    """Sessions that started in the window, newest first, a page at a time."""
    rows, cursor = reads.sessions(
        since_ns=window.since_ns,
        until_ns=window.until_ns,
        station_id=checked_id(station_id, "station_id"),
        connector_id=connector_id,
        pseudonym=checked_id(pseudonym, "pseudonym"),
        kinds=None if kind is None else [k.value for k in kind],
        flagged_only=flagged,
        after=page.cursor,
        limit=page.limit,
    )
    return answer(SessionPage(items=[SessionOut.of(row) for row in rows], next_cursor=cursor))


@router.get("/sessions/{session_id}", response_model=SessionDetailOut, responses=_NOT_FOUND)
def get_session(reads: Reads, svc: Services, session_id: SessionId) -> Response:
    """One session: its figures and billing confidence as last judged, every flag with its
    evidence and every kind's score; its segments and taper onset from its readings now."""
    checked_id(session_id, "session_id")
    detail = reads.session(session_id)
    if detail is None:
        raise _not_found(session_id)
    base = f"/api/v1/sessions/{session_id}"
    verdicts = latest_of_session(svc, detail.row)
    return answer(SessionDetailOut.of_detail(detail, base=base, verdicts=verdicts))


@router.get("/sessions/{session_id}/profile", response_model=ProfileOut, responses=_NOT_FOUND)
def get_profile(reads: Reads, session_id: SessionId, step_s: StepS = None) -> Response:
    """The session's power, offered power, state of charge and energy on a regular grid."""
    checked_id(session_id, "session_id")
    grid = reads.profile(session_id, step_s=step_s)
    if grid is None:
        raise _not_found(session_id)
    return answer(ProfileOut.of(grid))


@router.get(
    "/sessions/{session_id}/profile.png",
    response_class=Response,
    responses={
        200: {
            "description": "the profile as a PNG",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "not modified: the ETag sent in If-None-Match still holds"},
        **_NOT_FOUND,
    },
)
async def get_profile_png(
    request: Request,
    reads: Reads,
    session_id: SessionId,
    step_s: StepS = None,
    width: Annotated[int, Query(ge=320, le=2400, description="pixels")] = 1000,
    height: Annotated[int, Query(ge=240, le=1600, description="pixels")] = 500,
    if_none_match: Annotated[str | None, Header(max_length=4096)] = None,
) -> Response:
    """The profile drawn: power and offered power, state of charge on a second axis, segments
    as a band, flagged ranges shaded and labelled."""
    checked_id(session_id, "session_id")
    draw = partial(
        reads.profile_png,
        session_id,
        step_s=step_s,
        width_px=width,
        height_px=height,
        if_none_match=_etags(if_none_match),
    )
    image = await drawn(request, draw)
    if image is None:
        raise _not_found(session_id)
    headers = {"ETag": f'"{image.etag}"', "Cache-Control": "no-cache"}
    if image.png is None:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(content=image.png, media_type="image/png", headers=headers)


async def drawn(request: Request, draw: Callable[[], T]) -> T:
    """``draw()`` on the picture threads (``PNG_WORKERS``): 503 with Retry-After at once when
    ``PNG_WAITING`` pictures wait already. Every route that draws comes this way.

    An API key's pictures are drawn one at a time (``PNG_PER_KEY``) and wait for that in a
    line of the key's own, so that the threads take the keys in turn: a picture waits behind
    one picture of each other key drawing, not behind one key's burst (100 heatmaps at once
    from one key held another key's session picture 2.2 s, with every burst picture queued
    at the threads ahead of it)."""
    limiter = _png_limiter(request)
    if limiter.statistics().tasks_waiting >= PNG_WAITING:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "pictures: too many being drawn; retry shortly",
            headers={"Retry-After": "1"},
        )
    slot = getattr(request.state, "api_key_slot", None)
    if slot is None:  # no API keys: one line for all
        return await anyio.to_thread.run_sync(draw, limiter=limiter)
    lines: dict[str, tuple[anyio.CapacityLimiter, int]] = request.app.state.png_lines
    own, users = lines.get(slot, (None, 0))
    if own is None:
        own = anyio.CapacityLimiter(PNG_PER_KEY)
    lines[slot] = (own, users + 1)
    try:
        async with own:
            return await anyio.to_thread.run_sync(draw, limiter=limiter)
    finally:
        own, users = lines[slot]
        if users > 1:
            lines[slot] = (own, users - 1)
        else:
            del lines[slot]


def _png_limiter(request: Request) -> anyio.CapacityLimiter:
    """The application's own limit on pictures drawn at once (made on the event loop, at the
    first picture): PNG requests wait for these threads, never for the ones JSON routes run on,
    so a burst of pictures cannot hold up the rest of the API."""
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "png_limiter", None)
    if limiter is None:
        limiter = state.png_limiter = anyio.CapacityLimiter(PNG_WORKERS)
        state.png_lines = {}  # API key -> (its own line, requests in it or drawn)
    return limiter


def _etags(header: str | None) -> frozenset[str]:
    """The entity tags of an If-None-Match header, without quotes or weakness."""
    if not header:
        return frozenset()
    return frozenset(
        tag.strip().removeprefix("W/").strip('"') for tag in header.split(",") if tag.strip()
    )
