"""One station's conversation: the simulated events it replays, each by its event type's handler.

The version modules (``v16``, ``v201``) say which OCPP Calls each event type becomes; this one
holds what both share: sending a Call and counting what came back, and the measurands a reading
carries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from ocpp.exceptions import OCPPError

from chargewatch.events import EventType

Event = dict[str, Any]  # one line of the events file (CONTRACTS.md section 1)
Handler = Callable[[Event], Awaitable[None]]

SAMPLED = (  # event field, measurand, unit
    ("energy_wh", "Energy.Active.Import.Register", "Wh"),
    ("power_w", "Power.Active.Import", "W"),
    ("power_offered_w", "Power.Offered", "W"),
    ("current_a", "Current.Import", "A"),
    ("voltage_v", "Voltage", "V"),
    ("soc_pct", "SoC", "Percent"),
    ("temperature_c", "Temperature", "Celsius"),
)


class Replayer(ABC):
    """Turns one station's events into the Calls of one OCPP version."""

    subprotocol: ClassVar[str]
    charge_point: ClassVar[type[Any]]  # the ``ocpp`` library's ChargePoint of that version

    def __init__(self, cp: Any, errors: Counter[str], counts: Counter[str]) -> None:
        self.cp = cp
        self.errors = errors
        self.counts = counts
        self.transactions: dict[str, Any] = {}  # simulated session id -> OCPP transaction id
        self.open_on: dict[int, str] = {}  # connector -> simulated session id
        self.handlers = self._handlers()

    @abstractmethod
    def _handlers(self) -> Mapping[EventType, Handler]:
        """What each event type sends, by its handler."""

    @abstractmethod
    def boot(self) -> Any:
        """The BootNotification that opens the conversation."""

    async def call(self, payload: Any) -> Any:
        self.counts["messages"] += 1
        try:
            return await self.cp.call(payload, suppress=False)
        except OCPPError as exc:
            self.errors[exc.code] += 1
            return None

    async def send(self, event: Event) -> None:
        handler = self.handlers.get(event["type"])
        if handler is not None:  # an event type no Call stands for is skipped
            await handler(event)
