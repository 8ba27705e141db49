"""Who may open an OCPP connection: station ids the store can hold, credentials, slowing guessers.

A station connects at ``/ocpp/{station_id}``. Before the WebSocket is accepted, ``Admission``
decides: the id must be an OCPP identity (below), one of our subprotocols must be offered, and
with station authentication on (security profiles 1 and 2) the HTTP Basic credentials must name
the station and its password. Each refusal is logged (station, client address, reason; never the
password) and counted by ``Refusal``.

Password checks are slow on purpose (PBKDF2), so they run on a worker thread of their own, one
at a time per station and per client address; past ``free_failures`` failures an address is
refused without a check for a time that doubles with each further failure (up to
``max_block_s``). So is a station, but only to the addresses that failed for it: one that has
not is still checked. A client cannot make the event loop wait, a guesser gets one try per
block, and a stranger failing on purpose cannot keep the station itself out (the station, from
its own address, is refused only for its own failures); a guesser with many addresses gets one
more try from each, and the password is 16 characters or more.

A password found right by the slow check is remembered for ``VERIFIED_TTL_S`` as a keyed hash in
memory (HMAC-SHA256 under a key made at start, never the password): the same station with the
same password within that time is admitted by comparing hashes, without the worker. A fleet
reconnecting after a network blip does not queue behind the slow check (one at a time: 5,000
stations at tens of ms each would wait minutes, most of them refused as busy), nor behind a
guesser keeping the worker busy from many addresses. A wrong password never touches what is
remembered (a guesser cannot push a station back to the slow check), and a password changed with
``stations set-password`` replaces the old one in a running ``serve`` within ``VERIFIED_TTL_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import os
import string
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from .rpc import SUBPROTOCOLS

__all__ = [
    "MAX_STATION_ID_CHARS",
    "Admission",
    "Admit",
    "FailureThrottle",
    "Refusal",
    "station_id_problem",
]

logger = logging.getLogger(__name__)

# OCPP: the identity of a station (the last segment of its URL) is at most 48 characters of the
# identifierString set. The id becomes a tag in InfluxDB and a user name in Basic auth; the set
# keeps out all that line protocol cannot carry (a trailing backslash, line breaks, NUL).
MAX_STATION_ID_CHARS = 48
_IDENTITY_CHARS = frozenset(string.ascii_letters + string.digits + "*-_=:+|@.")
_SHOWN_CHARS = 64


def station_id_problem(station_id: str) -> str | None:
    """Why ``station_id`` cannot be a station's identity here; None when it can."""
    if not station_id:
        return "the station id is empty"
    if len(station_id) > MAX_STATION_ID_CHARS:
        return f"the station id is longer than {MAX_STATION_ID_CHARS} characters"
    if not _IDENTITY_CHARS.issuperset(station_id):
        return "the station id may hold only letters, digits and * - _ = : + | @ ."
    return None


def _shown(station_id: str) -> str:
    """A station id fit for a log line: a hostile one is escaped and cut short."""
    if station_id_problem(station_id) is None:
        return station_id
    return ascii(station_id[:_SHOWN_CHARS])


class Refusal(StrEnum):
    """Why a connection was refused; the keys of the gateway's ``refused`` counter."""

    BAD_STATION_ID = "bad_station_id"
    NO_SUBPROTOCOL = "no_subprotocol"
    NO_CREDENTIALS = "no_credentials"  # station auth on, no usable Basic credentials
    WRONG_PASSWORD = "wrong_password"  # unknown station, wrong password, another station's name
    THROTTLED = "throttled"  # too many failures lately, for this station or from this address
    BUSY = "busy"  # too many checks waiting, a check too slow, or the state database failing


@dataclass(frozen=True, slots=True)
class Admit:
    """The verdict on one connection: its ``subprotocol`` when admitted, else a ``refusal``
    with a ``message`` for the station and, when trying again later may help, when."""

    subprotocol: str | None = None
    refusal: Refusal | None = None
    message: str = ""
    retry_after_s: int | None = None


class FailureThrottle:
    """Counts failed logins per key (a station, an address) on an explicit clock.

    The first ``free_failures`` cost nothing; each one after blocks the key for ``base_s``,
    then twice as long each time, up to ``max_block_s``. A key without a failure for
    ``forget_s`` starts afresh; at most ``max_keys`` are remembered (the stalest go first).
    """

    def __init__(
        self,
        *,
        free_failures: int = 5,
        base_s: float = 1.0,
        max_block_s: float = 60.0,
        forget_s: float = 900.0,
        max_keys: int = 100_000,
    ) -> None:
        self.free_failures = free_failures
        self.base_s = base_s
        self.max_block_s = max_block_s
        self.forget_s = forget_s
        self.max_keys = max_keys
        self._keys: OrderedDict[str, tuple[int, float, float]] = OrderedDict()  # n, last, until

    def blocked_for(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        held = self._keys.get(key)
        if held is None:
            return 0.0
        _count, last, until = held
        if now - last > self.forget_s:
            del self._keys[key]
            return 0.0
        return max(0.0, until - now)

    def failures(self, key: str, now: float) -> int:
        """Failures of ``key`` that still count."""
        held = self._keys.get(key)
        if held is None or now - held[1] > self.forget_s:
            return 0
        return held[0]

    def failed(self, key: str, now: float) -> None:
        count, last, _until = self._keys.pop(key, (0, now, now))
        count = 1 if now - last > self.forget_s else count + 1
        over = count - self.free_failures
        block_s = min(self.base_s * 2.0 ** (over - 1), self.max_block_s) if over > 0 else 0.0
        self._keys[key] = (count, now, now + block_s)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)


# How long a password found right is taken again by its keyed hash (see the module docstring):
# a network blip or a station's reconnect loop lasts seconds to minutes; 10 min also bounds how
# long a running serve keeps taking a password just replaced.
VERIFIED_TTL_S = 600.0
# Stations remembered at most (the oldest go first): 32 bytes and a time each.
VERIFIED_MAX_STATIONS = 100_000


class _Verified:
    """Passwords found right lately, per station, as keyed hashes with an expiry."""

    def __init__(self, ttl_s: float, max_stations: int = VERIFIED_MAX_STATIONS) -> None:
        self._key = os.urandom(32)
        self._ttl_s = ttl_s
        self._max = max_stations
        self._held: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def _digest(self, station_id: str, password: str) -> bytes:
        text = f"{station_id}\0{password}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, text, hashlib.sha256).digest()

    def holds(self, station_id: str, password: str, now: float) -> bool:
        held = self._held.get(station_id)
        if held is None:
            return False
        digest, until = held
        if now >= until:
            del self._held[station_id]
            return False
        return hmac.compare_digest(digest, self._digest(station_id, password))

    def remember(self, station_id: str, password: str, now: float) -> None:
        self._held[station_id] = (self._digest(station_id, password), now + self._ttl_s)
        self._held.move_to_end(station_id)
        while len(self._held) > self._max:
            self._held.popitem(last=False)


class _Gates:
    """At most ``width`` holders of each key at once; the others wait their turn."""

    def __init__(self, width: int) -> None:
        self._width = width
        self._gates: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        gate, users = self._gates.get(key, (None, 0))
        if gate is None:
            gate = asyncio.Semaphore(self._width)
        self._gates[key] = (gate, users + 1)
        try:
            async with gate:
                yield
        finally:
            gate, users = self._gates[key]
            if users == 1:
                del self._gates[key]
            else:
                self._gates[key] = (gate, users - 1)


class Admission:
    """Admits or refuses station connections (see the module docstring).

    ``check_password(station_id, password)`` is None when stations need no credentials; it is
    called on a worker thread. ``timeout_s`` bounds the wait for a verdict, queues included.
    """

    # Checks waiting for the worker at most: beyond, a refusal at once (try again later) is
    # better than an answer after the station has given up.
    max_waiting = 32
    # Checks at once per client address: stations behind one NAT reconnecting together wait
    # less than one at a time, a guesser gains little.
    per_address = 4

    def __init__(
        self,
        check_password: Callable[[str, str], bool] | None,
        refused: Counter[str],
        *,
        timeout_s: float = 10.0,
        throttle: FailureThrottle | None = None,
        clock: Callable[[], float] = time.monotonic,
        verified_ttl_s: float = VERIFIED_TTL_S,
    ) -> None:
        self._check_password = check_password
        self._refused = refused
        self._timeout_s = timeout_s
        self._throttle = throttle or FailureThrottle()
        self._clock = clock
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="ocpp-auth")
        self._verified = _Verified(verified_ttl_s)
        self._waiting = 0
        self._station_gates = _Gates(1)
        self._address_gates = _Gates(self.per_address)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def admit(
        self,
        station_id: str,
        address: str,
        offered: Sequence[str],
        credentials: tuple[str, str] | None,
    ) -> Admit:
        """The verdict on a connection of ``station_id`` from ``address`` offering these
        subprotocols, with the Basic ``credentials`` (user, password) it sent, if any."""
        problem = station_id_problem(station_id)
        if problem is not None:
            return self.refuse(station_id, address, Refusal.BAD_STATION_ID, problem)
        subprotocol = next((p for p in SUBPROTOCOLS if p in offered), None)
        if subprotocol is None:
            supported = " or ".join(SUBPROTOCOLS)
            message = f"offer the subprotocol {supported}"
            return self.refuse(station_id, address, Refusal.NO_SUBPROTOCOL, message)
        if self._check_password is None:
            return Admit(subprotocol)
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._address_gates.hold(address), self._station_gates.hold(station_id):
                    refused = await self._authenticate(station_id, address, credentials)
        except TimeoutError:
            message = "credentials could not be checked in time, retry later"
            return self.refuse(station_id, address, Refusal.BUSY, message, _RETRY_BUSY_S)
        return refused or Admit(subprotocol)

    async def _authenticate(
        self, station_id: str, address: str, credentials: tuple[str, str] | None
    ) -> Admit | None:
        # the pair remembers which addresses failed for the station: its block holds for those
        pair = f"station {station_id} from {address}"
        keys = (f"address {address}", f"station {station_id}", pair)
        now = self._clock()
        blocked_s = self._throttle.blocked_for(keys[0], now)
        if self._throttle.failures(pair, now):
            blocked_s = max(blocked_s, self._throttle.blocked_for(keys[1], now))
        if blocked_s > 0:
            retry = math.ceil(blocked_s)
            message = f"too many failed attempts, retry in {retry} s"
            return self.refuse(station_id, address, Refusal.THROTTLED, message, retry)
        if credentials is None or credentials[0] != station_id:
            for key in keys:
                self._throttle.failed(key, now)
            if credentials is None:
                message = "send the station's HTTP Basic credentials"
                return self.refuse(station_id, address, Refusal.NO_CREDENTIALS, message)
            return self.refuse(station_id, address, Refusal.WRONG_PASSWORD, _WRONG)
        if self._verified.holds(station_id, credentials[1], now):
            matched: bool | None = True  # found right lately: no slow check (module docstring)
        else:
            matched = await self._check(station_id, credentials[1])
            if matched:
                self._verified.remember(station_id, credentials[1], self._clock())
        if matched is None:
            message = "credentials could not be checked now, retry later"
            return self.refuse(station_id, address, Refusal.BUSY, message, _RETRY_BUSY_S)
        if not matched:
            now = self._clock()
            for key in keys:
                self._throttle.failed(key, now)
            return self.refuse(station_id, address, Refusal.WRONG_PASSWORD, _WRONG)
        self._throttle.succeeded(keys[1])
        self._throttle.succeeded(pair)
        return None

    async def _check(self, station_id: str, password: str) -> bool | None:
        """Whether the password matches; None when too many checks wait or it failed."""
        assert self._check_password is not None
        if self._waiting >= self.max_waiting:
            return None
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._worker, self._check_password, station_id, password
            )
        except Exception as exc:  # the state database failing: refuse, say so, carry on
            logger.error(
                "checking the password of station %s failed: %s", station_id, type(exc).__name__
            )
            return None
        finally:
            self._waiting -= 1

    def refuse(
        self,
        station_id: str,
        address: str,
        refusal: Refusal,
        message: str,
        retry_after_s: int | None = None,
    ) -> Admit:
        """Log and count a refusal; the verdict to send."""
        self._refused[refusal.value] += 1
        logger.warning(
            "refused station %s from %s (%s): %s",
            _shown(station_id),
            address,
            refusal.value,
            message,
        )
        return Admit(refusal=refusal, message=message, retry_after_s=retry_after_s)


_WRONG = "unknown station or wrong password"
_RETRY_BUSY_S = 10
