"""What the station, usage, per-user energy and KPI routes read (``analytics.network``, injected
by ``service``): figures of ``chargewatch.figures``, which the routes turn into their schemas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chargewatch.figures import NetworkKpis, StationFigures, UsageFigures, UserEnergy

__all__ = ["NetworkSource"]


class NetworkSource(Protocol):
    """Windows are UTC ns, ``[since, until)``, checked by the routes (a longer or inverted one
    raises ``ValueError``). Blocking: call from a worker thread. Raises ``InfluxError`` or
    ``StateError`` when a store does not answer."""

    def stations(self, since_ns: int, until_ns: int) -> Sequence[StationFigures]: ...

    def station(self, station_id: str, since_ns: int, until_ns: int) -> StationFigures | None: ...

    def usage(
        self, since_ns: int, until_ns: int, *, station_ids: Sequence[str] | None, tz: str
    ) -> UsageFigures: ...

    def usage_png(
        self, since_ns: int, until_ns: int, *, station_ids: Sequence[str] | None, tz: str
    ) -> bytes: ...

    def user_energy(self, pseudonym: str, since_ns: int, until_ns: int) -> UserEnergy: ...

    def kpis(self, since_ns: int, until_ns: int) -> NetworkKpis: ...
