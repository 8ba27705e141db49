"""What the routes need from the running service, and the API-key check.

The routes see the service only through ``ApiServices``, built by ``service.serve``; this
keeps api/ free of ingest internals and lets tests build the app around real parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Protocol, Union, get_args, get_origin

import anyio
import anyio.to_thread
from fastapi import Depends, HTTPException, Request, WebSocket, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.network import NetworkSource
from api.ratelimit import RateLimiter
from chargewatch.catalog import SessionRow
from chargewatch.readmodel import FlagPage, ProfileGrid, ProfileImage, SessionDetail
from chargewatch.roles import Role
from chargewatch.state import api_key_id
from chargewatch.verdicts import VerdictDesk

if TYPE_CHECKING:  # api.alerts imports this module for its routes
    from api.alerts import AlertSource


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    index: int
    field: str | None
    reason: str


@dataclass(slots=True)
class AcceptOutcome:
    """What became of a batch of events: accepted counts by type, the number rejected, and
    the first of those rejections (in order; as many as the acceptor was asked to list)."""

    accepted_by_type: dict[str, int] = field(default_factory=dict)
    rejected: list[RejectedEvent] = field(default_factory=list)
    rejected_count: int = 0


class EventAcceptor(Protocol):
    """Decodes (gzip), splits, validates, pseudonymizes and durably stores one batch body,
    given as the parts it arrived in: its accepted events are spooled together, or none of
    them. Lists the first ``max_listed`` rejections and counts them all.

    Raises ``api.bodies.BodyError`` for a body that cannot be taken whole (its HTTP status
    says why), ``BackpressureError`` when full for now, ``TooLargeError`` when the batch is
    larger than the spool could ever hold."""

    def __call__(self, parts: list[bytes], *, gzipped: bool, max_listed: int) -> AcceptOutcome: ...


class OcppAdmission(Protocol):
    """The verdict on a station's connection: ``subprotocol`` to accept it with, or a
    ``refusal`` (a short reason key: ``bad_station_id``, ``no_subprotocol``, ``no_credentials``,
    ``wrong_password``, ``throttled``, ``busy``), a ``message`` for the station and, where
    trying later helps, ``retry_after_s``."""

    @property
    def subprotocol(self) -> str | None: ...

    @property
    def refusal(self) -> str | None: ...

    @property
    def message(self) -> str: ...

    @property
    def retry_after_s(self) -> int | None: ...


class OcppEndpoint(Protocol):
    """The OCPP-J conversation behind ``/ocpp/{station_id}`` (the gateway, in ``service``)."""

    async def admit(
        self,
        station_id: str,
        address: str,
        offered: Sequence[str],
        credentials: tuple[str, str] | None,
    ) -> OcppAdmission:
        """Whether the station may connect, before the upgrade is accepted: its id, the
        subprotocols it offers, its HTTP Basic (user, password) if it sent one; logged and
        counted when refused. Password checks happen off the event loop."""
        ...

    async def serve(self, station_id: str, subprotocol: str, websocket: WebSocket) -> None:
        """Talk with an accepted station until it leaves."""
        ...


class ReadModel(Protocol):
    """What the read routes show of sessions, profiles, flags and scores (``analytics.read``):
    the session catalogue, and each session's readings from InfluxDB. Windows are UTC ns,
    ``[since, until)``; ``after`` is a page cursor (``chargewatch.catalog.CursorError`` when it
    is not one); a session not in the catalogue is None. Blocking: call from a worker thread."""

    def sessions(
        self,
        *,
        since_ns: int,
        until_ns: int,
        station_id: str | None,
        connector_id: int | None,
        pseudonym: str | None,
        kinds: Sequence[str] | None,
        flagged_only: bool,
        after: str | None,
        limit: int,
    ) -> tuple[list[SessionRow], str | None]: ...

    def ranked(
        self,
        kind: str,
        *,
        since_ns: int,
        until_ns: int,
        station_id: str | None,
        connector_id: int | None,
        min_score: float | None,
        after: str | None,
        limit: int,
    ) -> tuple[list[SessionRow], str | None]: ...

    def session_row(self, session_id: str) -> SessionRow | None: ...

    def session(self, session_id: str) -> SessionDetail | None: ...

    def profile(self, session_id: str, *, step_s: float | None) -> ProfileGrid | None: ...

    def profile_png(
        self,
        session_id: str,
        *,
        step_s: float | None,
        width_px: int,
        height_px: int,
        if_none_match: Collection[str] = (),
    ) -> ProfileImage | None: ...

    def flags(
        self,
        *,
        since_ns: int,
        until_ns: int,
        station_id: str | None,
        connector_id: int | None,
        kinds: Sequence[str] | None,
        session_id: str | None,
        after: str | None,
        limit: int,
    ) -> FlagPage: ...


@dataclass(frozen=True, slots=True)
class ApiServices:
    accept_events: EventAcceptor
    role_of: Callable[[str], Role | None]
    health: Callable[[], dict[str, object]]
    metrics: Callable[[], tuple[bytes, str]]  # payload and content type
    max_body_bytes: int  # as sent (the acceptor bounds it once decompressed)
    max_concurrent_batches: int  # bodies accepted at once (a few more wait, then 503)
    # grace for a request body to start (then it must keep up ``api.reading.MIN_BODY_RATE``)
    body_timeout_s: float = 10.0
    api_auth: bool = True
    ocpp: OcppEndpoint | None = None  # None: /ocpp/ refuses every station
    reads: ReadModel | None = None  # None: the read routes answer 503
    network: NetworkSource | None = None  # None: stations, usage, users, KPIs answer 503
    rate_limiter: RateLimiter | None = None  # None: keys are not rate limited
    alerts: AlertSource | None = None  # None: /alerts answers 503
    verdicts: VerdictDesk | None = None  # None: verdicts answer 503, flags show none


async def services(request: Request) -> ApiServices:
    # async, as every dependency that neither blocks nor computes much: FastAPI runs a plain
    # function dependency on a worker thread, a round trip between threads per request each
    found: ApiServices = request.app.state.services
    return found


Services = Annotated[ApiServices, Depends(services)]

_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
# Declared as security schemes, so that the OpenAPI document shows them on every route that
# needs a key (generated clients and fuzzers see them); checked below, not by FastAPI.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKeyBearer",
    description="An API key (`chargewatch keys create`): `Authorization: Bearer <key>`.",
)
_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKeyHeader",
    description="The same API key in an `X-API-Key` header, for clients that cannot send one "
    "as a bearer token.",
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
KeyHeader = Annotated[str | None, Depends(_key_header)]


def presented_key(bearer: HTTPAuthorizationCredentials | None, key_header: str | None) -> str:
    """The API key a request presents (``Bearer`` first, then ``X-API-Key``); "" for none."""
    key = bearer.credentials.strip() if bearer is not None else ""
    return key or (key_header or "").strip()


async def client_identity(request: Request, bearer: Bearer, key_header: KeyHeader) -> str:
    """Who is asking, for sharing a limited resource fairly between clients: the public part
    of the API key, or the client's address when the request carries none."""
    key_id = api_key_id(presented_key(bearer, key_header))
    if key_id is not None:
        return f"key {key_id}"
    return f"address {request.client.host if request.client is not None else 'unknown'}"


ClientIdentity = Annotated[str, Depends(client_identity)]


# Requests one API key may have in progress at once; one more gets 429 at once. Routes that
# read InfluxDB or draw run on worker threads, 40 shared by every client: one key's burst of 100
# heatmaps held /healthz and every other key's requests up for 5 s (a probe of the read API).
# 16 leaves most of the threads to others, and room for a Grafana data source (one key for every
# viewer) loading several dashboards of up to 5 API panels each at once.
MAX_IN_FLIGHT_PER_KEY = 16
# Threads that look keys up in the state database, apart from the routes' own, so that no burst
# of slow routes makes the next request wait to be admitted; keys whose id was never found valid
# have one thread and this many waiting (``_look_up``); keys remembered as found valid.
AUTH_THREADS = 4
UNPROVEN_WAITING = 32
MAX_PROVEN_KEYS = 10_000


def require(minimum: Role) -> Callable[..., AsyncIterator[Role]]:
    """A dependency admitting requests whose API key has at least ``minimum``'s rights.

    The key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. It is looked
    up on every request (on threads of its own: ``AUTH_THREADS``), so a revoked key stops
    working at once. A known key then takes a token from its bucket (``api.ratelimit``): 429
    with ``Retry-After`` when it has none, and holds one of its ``MAX_IN_FLIGHT_PER_KEY``
    places until the answer is sent: 429 when it has none left.
    """

    async def check(
        request: Request, svc: Services, bearer: Bearer, key_header: KeyHeader
    ) -> AsyncIterator[Role]:
        if not svc.api_auth:
            yield Role.ADMIN
            return
        key = presented_key(bearer, key_header)
        if not key:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "an API key is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        role = await _look_up(request, svc, key)
        slot = api_key_id(key) or key
        if role is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown or revoked API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if svc.rate_limiter is not None:
            wait_s = svc.rate_limiter.take(slot)
            if wait_s:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"too many requests with this API key; retry in {wait_s} s",
                    headers={"Retry-After": str(wait_s)},
                )
        if _RANK[role] < _RANK[minimum]:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this needs the {minimum.value} role or higher"
            )
        await strict_query(request)
        busy = _in_flight(request)
        if busy.get(slot, 0) >= MAX_IN_FLIGHT_PER_KEY:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"this API key has {MAX_IN_FLIGHT_PER_KEY} requests in progress already; "
                "retry when one is answered",
                headers={"Retry-After": "1"},
            )
        busy[slot] = busy.get(slot, 0) + 1
        request.state.api_key_slot = slot  # pictures wait in a line per key (``drawn``)
        try:
            yield role
        finally:
            left = busy[slot] - 1
            if left:
                busy[slot] = left
            else:
                del busy[slot]

    return check


async def _look_up(request: Request, svc: ApiServices, key: str) -> Role | None:
    """The key's role (None: unknown or revoked), looked up in the state database on threads of
    their own. A key never found valid here (a guess, a known id with a guessed secret, or a new
    key's first use; kept as a digest, never the key)
    goes by one thread of its own, with ``UNPROVEN_WAITING`` more waiting, then 429: a flood of
    made-up keys costs the database that much and never delays the keys in use."""
    state = request.app.state
    proven: set[bytes] | None = getattr(state, "proven_keys", None)
    if proven is None:
        proven = state.proven_keys = set()
        state.auth_limiter = anyio.CapacityLimiter(AUTH_THREADS)
        state.unproven_limiter = anyio.CapacityLimiter(1)
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    if digest in proven:
        return await anyio.to_thread.run_sync(svc.role_of, key, limiter=state.auth_limiter)
    limiter: anyio.CapacityLimiter = state.unproven_limiter
    if limiter.statistics().tasks_waiting >= UNPROVEN_WAITING:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many requests with keys not seen before; retry shortly",
            headers={"Retry-After": "1"},
        )
    role = await anyio.to_thread.run_sync(svc.role_of, key, limiter=limiter)
    if role is not None and len(proven) < MAX_PROVEN_KEYS:
        proven.add(digest)
    return role


def _in_flight(request: Request) -> dict[str, int]:
    """Requests in progress per API key (touched on the event loop only: no lock)."""
    state = request.app.state
    busy: dict[str, int] | None = getattr(state, "in_flight_per_key", None)
    if busy is None:
        busy = state.in_flight_per_key = {}
    return busy


# -- the query string as a whole ------------------------------------------------------------------

# Per route: the query parameters it declares, and those of them that may repeat (lists).
_DECLARED: dict[int, tuple[frozenset[str], frozenset[str]]] = {}


async def strict_query(request: Request) -> None:
    """422 for a query parameter the route does not take (a misspelt filter was ignored, and
    ``/sessions?station=X`` answered every station's sessions), or one given twice that takes
    one value (the last one won, silently). Checked once the key is admitted (``require``), and
    on ``/healthz``."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known, repeatable = _DECLARED.get(id(route)) or _declared(route, dependant)
    seen: set[str] = set()
    unknown: list[str] = []
    for name, _ in request.query_params.multi_items():
        if name not in known:
            shown = name if len(name) <= 64 else name[:64] + "..."
            if shown not in unknown and len(unknown) < 10:
                unknown.append(shown)
        elif name in seen and name not in repeatable:
            raise unprocessable(name, "is given more than once; it takes one value")
        seen.add(name)
    if unknown:
        offered = ", ".join(sorted(known)) or "none"
        what = "is not a parameter" if len(unknown) == 1 else "are not parameters"
        raise unprocessable(", ".join(unknown), f"{what} of this route (it takes: {offered})")


def _declared(route: object, dependant: Any) -> tuple[frozenset[str], frozenset[str]]:
    known: set[str] = set()
    repeatable: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        for param in current.query_params:
            name = param.alias or param.name
            known.add(name)
            if _is_sequence(param.field_info.annotation):
                repeatable.add(name)
        stack.extend(current.dependencies)
    found = frozenset(known), frozenset(repeatable)
    _DECLARED[id(route)] = found
    return found


def _is_sequence(annotation: object) -> bool:
    """Whether a parameter's type takes several values (``list[str] | None`` and the like)."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return any(_is_sequence(arg) for arg in get_args(annotation))
    if origin is Annotated:
        return _is_sequence(get_args(annotation)[0])
    return origin in (list, tuple, set, frozenset, Sequence)


def unprocessable(parameter: str, reason: str) -> HTTPException:
    """422 naming the parameter and the reason (every refusal of a request's values)."""
    return HTTPException(422, f"{parameter}: {reason}")
