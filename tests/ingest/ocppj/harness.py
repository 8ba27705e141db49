"""A real gateway behind a real ``websockets`` server on a free loopback port, for the tests."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ocpp.v16 import ChargePoint as Client16
from ocpp.v201 import ChargePoint as Client201
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from chargewatch.events import Event, StationEvent
from chargewatch.state import StateStore
from ingest.ocppj import (
    SUBPROTOCOLS,
    AuthMode,
    AuthPolicy,
    InMemoryTransactionIds,
    OcppGateway,
    websockets_connection,
)
from ingest.ocppj.shared_book import SharedBook
from ingest.pseudonym import Pseudonymizer
from ingest.spool import SpoolFullError

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
NOW_NS = int(NOW.timestamp()) * 1_000_000_000
PSEUDONYMIZE = Pseudonymizer(b"0123456789abcdef-test-key")


class Collector:
    """A sink keeping events in memory; ``full`` makes it refuse like a full spool.

    ``events`` holds what the stations' messages said (sessions, readings, statuses...),
    ``liveness`` the gateway's ``station`` events, and ``calls`` each call's events as given.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.liveness: list[StationEvent] = []
        self.calls: list[list[Event]] = []
        self.full = False

    async def __call__(self, events: list[Event]) -> None:
        if self.full:
            raise SpoolFullError("spool holds its maximum")
        self.calls.append(list(events))
        for event in events:
            if isinstance(event, StationEvent):
                self.liveness.append(event)
            else:
                self.events.append(event)


def make_gateway(sink: Collector, auth: AuthPolicy | None = None, **options: Any) -> OcppGateway:
    """A gateway on a fixed clock (unless ``options`` give one); ``options`` go to
    ``OcppGateway`` (its limits, say)."""
    options.setdefault("clock", lambda: NOW)
    return OcppGateway(
        sink=sink,
        pseudonymize=PSEUDONYMIZE,
        transactions=InMemoryTransactionIds(start=1000),
        auth=auth or AuthPolicy(AuthMode.MONITOR),
        **options,
    )


@asynccontextmanager
async def serving(gateway: OcppGateway) -> AsyncIterator[str]:
    """Serve ``gateway`` at ``ws://127.0.0.1:<free port>/ocpp/{station_id}``; yields the base."""

    async def handler(ws: ServerConnection) -> None:
        station_id = ws.request.path.rsplit("/", 1)[-1] if ws.request is not None else ""
        await gateway.handle(station_id, ws.subprotocol or "", websockets_connection(ws))

    protocols = [Subprotocol(p) for p in SUBPROTOCOLS]
    async with serve(handler, "127.0.0.1", 0, subprotocols=protocols) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ocpp"


@contextmanager
def serving_in_thread(gateway: OcppGateway) -> Iterator[str]:
    """The same server on its own event loop in a thread, for synchronous clients."""
    ready: list[str] = []
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        async with serving(gateway) as url:
            ready.append(url)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        if not started.wait(10):
            raise RuntimeError("the test server did not start")
        yield ready[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


# --- the ocpp library's charge-point side, as public simulators use it ----------------------

CLIENT_LOG = logging.getLogger("tests.ocpp.client")


@asynccontextmanager
async def station(url: str, station_id: str, version: str) -> AsyncIterator[Any]:
    """A library ChargePoint connected to the gateway, its receive loop running."""
    cls = Client16 if version == "ocpp1.6" else Client201
    async with connect(f"{url}/{station_id}", subprotocols=[Subprotocol(version)]) as ws:
        cp = cls(station_id, ws, response_timeout=10, logger=CLIENT_LOG)
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            await ws.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def run(body: Callable[[str], Awaitable[None]], **options: Any) -> tuple[Collector, OcppGateway]:
    """Serve a fresh gateway, run ``body(url)`` against it; the sink and the gateway after."""
    sink = Collector()
    gateway = make_gateway(sink, **options)

    async def main() -> None:
        async with serving(gateway) as url:
            await body(url)

    asyncio.run(main())
    return sink, gateway


def of_type(sink: Collector, kind: type) -> list[Any]:
    return [e for e in sink.events if isinstance(e, kind)]


@contextmanager
def shared_book(folder: Path) -> Iterator[dict[str, Any]]:
    """The state database's transaction book (``chargewatch serve``'s), in ``folder``, as
    ``run`` options."""
    store = StateStore(f"sqlite:///{folder / 'state.db'}")
    book = SharedBook(store.engine)
    try:
        yield {"book": book}
    finally:
        book.shutdown()
        store.close()


def sv16(value: str, measurand: str | None = None, unit: str | None = None, **more: str) -> Any:
    """A 1.6 sampledValue; ``more`` gives context, format, phase, location."""
    keys = {"measurand": measurand, "unit": unit, **more}
    return {"value": value} | {k: v for k, v in keys.items() if v is not None}


def mv16(ts: str, *values: dict[str, Any]) -> dict[str, Any]:
    return {"timestamp": ts, "sampledValue": list(values)}


def sv201(value: float, measurand: str | None = None, unit: str | None = None, **more: Any) -> Any:
    """A 2.0.1 sampledValue (snake_case, as the library's payload classes take it); ``more``
    gives phase, location, context, signed_meter_value, and ``multiplier`` for the unit."""
    multiplier = more.pop("multiplier", None)
    uom: dict[str, Any] = {"unit": unit} if unit is not None else {}
    if multiplier is not None:
        uom["multiplier"] = multiplier
    keys = {"measurand": measurand, "unit_of_measure": uom or None, **more}
    return {"value": value} | {k: v for k, v in keys.items() if v is not None}


def mv201(ts: str, *values: dict[str, Any]) -> dict[str, Any]:
    return {"timestamp": ts, "sampled_value": list(values)}


def tx_event(
    event_type: str, ts: str, trigger: str, seq_no: int, tx: dict[str, Any], **more: Any
) -> Any:
    return call201.TransactionEvent(
        event_type=event_type,
        timestamp=ts,
        trigger_reason=trigger,
        seq_no=seq_no,
        transaction_info=tx,
        **more,
    )
