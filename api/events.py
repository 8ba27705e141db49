"""``POST /api/v1/events``: a batch of events as a JSON array or as JSON Lines.

What one request may cost is bounded, so that no client can stall or exhaust the service:

- the body, as sent and once decompressed (gzip), by ``max_body_bytes``;
- its events by ``max_events_per_request``, counted before any of them is parsed (413 beyond);
- the work: the event loop only reads the body; it is handed to the acceptor (which decodes and
  encodes it in worker processes, ``service.batches``) from a thread of its own, at most
  ``max_concurrent_batches`` at a time, with a few more read and waiting; one more gets 503
  with ``Retry-After`` at once, before its body is read;
- one client's share of those places: a client (an API key; an address without one) holds
  all of them but ``max_concurrent_batches`` at most, so that others always find places;
- the time a body may take: it must start within ``body_timeout_s`` and keep up at least
  ``api.reading.MIN_BODY_RATE`` on average after that (408 beyond), so that a body that never
  finishes gives its place back;
- the answer: the first ``MAX_LISTED_REJECTIONS`` rejections and the count of all of them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field

from api.bodies import BodyError, is_gzip
from api.deps import ClientIdentity, Services, require
from api.reading import read_limited
from chargewatch.errors import BackpressureError, TooLargeError
from chargewatch.roles import Role

router = APIRouter(prefix="/api/v1", tags=["events"])

RETRY_AFTER_S = 5
MAX_LISTED_REJECTIONS = 100
# Bodies read and waiting for a worker, per worker: enough to keep the workers busy, few
# enough that waiting bodies hold at most a few times max_body_bytes.
WAITING_PER_WORKER = 2

_T = TypeVar("_T")


class RejectedEventOut(BaseModel):
    """One refused event of a batch (the public form of ``api.deps.RejectedEvent``)."""

    index: int = Field(description="0-based position of the event in the array or JSON Lines")
    field: str | None = Field(description="the offending key; null when the whole event is bad")
    reason: str


class EventsAnswer(BaseModel):
    accepted: int
    accepted_by_type: dict[str, int]
    rejected: int = Field(description="how many events were rejected, all of them")
    rejections: list[RejectedEventOut] = Field(
        description=f"the first {MAX_LISTED_REJECTIONS} rejections, in order"
    )


class BatchGate:
    """Admits event batches: ``workers`` at once and ``workers * WAITING_PER_WORKER`` more held
    waiting; beyond, 503 at once. Each is handed to the acceptor from a thread of the gate's
    own, the waiting ones too: the acceptor encodes those that wait together as one group
    (``service.batches.BatchGroups``), at most ``workers`` groups at a time.

    The acceptor blocks (it waits for a worker process, then for the spool's fsync), so it runs
    on the gate's own threads rather than the shared pool's: each thread that has held a large
    batch keeps an allocator arena, and with any of the pool's threads taking batches, serve's
    memory grew to 570 MB under gzip bombs (bench/abuse.py).
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._threads: ThreadPoolExecutor | None = None  # started when first needed
        self._held = 0
        self._max_held = workers * (1 + WAITING_PER_WORKER)
        # One client's share: all places but ``workers``, which others always find.
        self._max_per_client = workers * WAITING_PER_WORKER
        self._by_client: Counter[str] = Counter()

    @contextmanager
    def admit(self, client: str) -> Iterator[None]:
        """Hold a place for one batch of ``client`` (only ever called on the event loop's
        thread)."""
        if self._held >= self._max_held:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"{self._held} event batches are in progress already; retry later",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        if self._by_client[client] >= self._max_per_client:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"this client has {self._by_client[client]} event batches in progress, its "
                "share; retry once one is answered",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self._held += 1
        self._by_client[client] += 1
        try:
            yield
        finally:
            self._held -= 1
            self._by_client[client] -= 1
            if not self._by_client[client]:
                del self._by_client[client]

    async def run(self, work: Callable[[], _T]) -> _T:
        """``work()`` on one of the gate's threads, once one is free."""
        if self._threads is None:  # one per batch held: those waiting join the next group
            self._threads = ThreadPoolExecutor(self._max_held, thread_name_prefix="event-batch")
        return await asyncio.get_running_loop().run_in_executor(self._threads, work)


def batch_gate(request: Request) -> BatchGate:
    gate: BatchGate = request.app.state.batch_gate
    return gate


Gate = Annotated[BatchGate, Depends(batch_gate)]

_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "Events (CONTRACTS.md section 1) as a JSON array or as JSON Lines, "
        "optionally with `Content-Encoding: gzip`.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}},
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one event object per line"}
            },
        },
    }
}


@router.post(
    "/events",
    response_model=EventsAnswer,
    responses={
        400: {"description": "the body is empty, an array that never closes, or bad gzip"},
        408: {
            "description": "the body did not come in time: it must start within the "
            "handshake timeout and keep up 16 KiB/s on average"
        },
        413: {
            "description": "the body (as sent or decompressed), its number of events, or its "
            "size in the spool is over a limit: split it"
        },
        415: {"description": "a Content-Encoding other than gzip"},
        503: {
            "description": "the spool is full, or too many batches are in progress; "
            "retry after Retry-After seconds"
        },
    },
    openapi_extra=_REQUEST_BODY,
)
async def post_events(
    request: Request,
    svc: Services,
    gate: Gate,
    client: ClientIdentity,
    _role: Annotated[Role, Depends(require(Role.OPERATOR))],
) -> EventsAnswer:
    """Accept events (CONTRACTS.md section 1). Each bad event is counted and the first ones
    listed with their 0-based index and reason; the others are stored. 2xx means stored
    durably (spooled to disk)."""
    try:
        gzipped = is_gzip(request.headers.get("content-encoding"))
        with gate.admit(client):
            parts = await read_limited(
                request, limit=svc.max_body_bytes, grace_s=svc.body_timeout_s, route="events"
            )
            accept = partial(
                svc.accept_events, parts, gzipped=gzipped, max_listed=MAX_LISTED_REJECTIONS
            )
            outcome = await gate.run(accept)
    except BodyError as exc:
        headers = {"Accept-Encoding": "gzip"} if exc.status == 415 else None
        raise HTTPException(exc.status, exc.detail, headers=headers) from None
    except TooLargeError as exc:
        raise HTTPException(413, str(exc)) from None  # named differently across Starlettes
    except BackpressureError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            str(exc),
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    return EventsAnswer(
        accepted=sum(outcome.accepted_by_type.values()),
        accepted_by_type=outcome.accepted_by_type,
        rejected=outcome.rejected_count,
        rejections=[
            RejectedEventOut(index=r.index, field=r.field, reason=r.reason)
            for r in outcome.rejected
        ],
    )
