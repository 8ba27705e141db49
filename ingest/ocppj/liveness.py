"""What the gateway records of each station's link, as ``station`` events (CONTRACTS section 1).

- ``connect`` when a station's WebSocket is accepted (``ocpp_version``: the subprotocol);
- ``boot`` on BootNotification: vendor, model, firmware, the subprotocol, the heartbeat interval
  the gateway answers with, and (2.0.1) the station's boot reason;
- ``heartbeat``: the station was heard from, sampled (below);
- ``disconnect`` when the connection goes, with a ``DisconnectReason``.

Sampling. Liveness needs "last seen", not every message: a station heartbeats every 30-300 s and
sends MeterValues every few seconds while charging, and a point for each would cost series points
for nothing. So any message from a station (not only Heartbeat: a station busy with MeterValues
is alive even if it sends no Heartbeat then) counts as seen, and a ``heartbeat`` event is written
at most once per ``sample_s`` per station, at the time of the message that made it due, in the
same sink call (one fsync) as that message's own events, before its answer goes out. Any other
station event stored (connect, boot) counts as a record too. Last-seen is thus never more than
``sample_s`` behind the last message, whatever the traffic, at the cost of one small point per
station per ``sample_s`` at most. The readings were the other way ("seen" = latest reading), but
their times are the charger's (a wrong clock, or samples queued while offline and sent later,
would move "last seen"), and a station with no session sends none.

An offline rule of "silent for k heartbeat intervals" (``heartbeat_interval_s``, on every event
but disconnect) raises no false alarm as long as k * interval > interval + ``sample_s``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DEFAULT_SAMPLE_S", "DisconnectReason", "Liveness", "disconnect_reason"]

# With the gateway's default 300 s heartbeat interval, any k >= 1.2 is safe (module docstring);
# a station keeping to that interval has every heartbeat written, a chattier one one a minute.
DEFAULT_SAMPLE_S = 60.0


class DisconnectReason(StrEnum):
    """Why a station's connection ended: the ``reason`` of its ``disconnect`` event."""

    CLOSED_BY_STATION = "closed_by_station"  # its close frame (1000, 1001, ...)
    REPLACED = "replaced"  # the station connected again; the older connection was closed
    PROTOCOL_ERROR = "protocol_error"  # the transport closed it: 1002, 1007, 1009 (too large) ...
    SERVER_SHUTDOWN = "server_shutdown"  # the service is stopping (1012)
    CONNECTION_LOST = "connection_lost"  # no close frame: network gone, ping timeout (1005/1006)
    TRANSPORT_ERROR = "transport_error"  # the transport failed in a way it should not


# WebSocket close codes (RFC 6455, IANA registry).
_NO_CLOSE_FRAME = frozenset({1005, 1006})  # a close without a code: uvicorn says so of a TCP drop
_PROTOCOL_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})
_GOING_AWAY, _KEEPALIVE_TIMEOUT, _SERVICE_RESTART = 1001, 1011, 1012


def disconnect_reason(code: int | None, *, by_station: bool | None) -> DisconnectReason:
    """The reason of a close with WebSocket ``code`` (None: none known). ``by_station``: whether
    the station sent the close first (None: the transport does not say, as Starlette's)."""
    if code is None or code in _NO_CLOSE_FRAME:
        return DisconnectReason.CONNECTION_LOST
    if by_station:
        return DisconnectReason.CLOSED_BY_STATION
    if code == _SERVICE_RESTART or (code == _GOING_AWAY and by_station is False):
        return DisconnectReason.SERVER_SHUTDOWN
    if code == _KEEPALIVE_TIMEOUT:
        return DisconnectReason.CONNECTION_LOST
    if code in _PROTOCOL_CODES:
        return DisconnectReason.PROTOCOL_ERROR
    return DisconnectReason.CLOSED_BY_STATION


class Liveness:
    """When each connected station's liveness was last recorded, and whether a heartbeat event
    is due. Times are the gateway clock's, in ns; nothing here reads a clock."""

    def __init__(self, *, sample_s: float = DEFAULT_SAMPLE_S) -> None:
        if not sample_s > 0:
            raise ValueError("sample_s must be > 0")
        self.sample_ns = round(sample_s * 1e9)
        self._recorded_ns: dict[str, int] = {}

    def due(self, station_id: str, now_ns: int) -> bool:
        """Whether a station heard from at ``now_ns`` should have a heartbeat event written."""
        last = self._recorded_ns.get(station_id)
        return last is None or now_ns - last >= self.sample_ns

    def recorded(self, station_id: str, ts_ns: int) -> None:
        """A station event of ``station_id`` at ``ts_ns`` is stored."""
        last = self._recorded_ns.get(station_id)
        if last is None or ts_ns > last:
            self._recorded_ns[station_id] = ts_ns

    def forget(self, station_id: str) -> None:
        """The station has no connection left: its entry goes (the map holds connected ones)."""
        self._recorded_ns.pop(station_id, None)

    def __len__(self) -> int:
        return len(self._recorded_ns)
