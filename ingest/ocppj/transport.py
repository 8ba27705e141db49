"""Adapters from WebSocket libraries to ``OcppConnection``: text frames, ConnectionClosedError."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed as WebSocketsConnectionClosed

from .interface import ConnectionClosedError

__all__ = [
    "StarletteConnection",
    "WebsocketsConnection",
    "closed_error",
    "starlette_connection",
    "websockets_connection",
]


class WebsocketsConnection:
    """A ``websockets`` (asyncio API) server or client connection."""

    def __init__(self, ws: Connection) -> None:
        self._ws = ws

    async def recv(self) -> str:
        try:
            message: Any = await self._ws.recv()
        except WebSocketsConnectionClosed as exc:
            raise closed_error(exc) from exc
        # OCPP-J sends text frames; a binary one is decoded so that it fails as a bad frame.
        return message if isinstance(message, str) else bytes(message).decode("utf-8", "replace")

    async def send(self, message: str) -> None:
        try:
            await self._ws.send(message)
        except WebSocketsConnectionClosed as exc:
            raise closed_error(exc) from exc

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)  # websockets' close never raises for a closed one


class StarletteConnection:
    """A Starlette/FastAPI ``WebSocket`` that the route has already accepted."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def recv(self) -> str:
        # A turn of the event loop before each message. The server parses all that one read of
        # the socket holds (256 KiB: thousands of small frames from a station that does not wait
        # for its answers, against OCPP-J's one Call at a time) and ``receive`` returns queued
        # messages without suspending, so without this turn one station's backlog would hold the
        # loop, every other station and HTTP client waiting, for seconds.
        await asyncio.sleep(0)
        try:
            message = await self._ws.receive()
        except WebSocketDisconnect as exc:
            raise ConnectionClosedError("disconnected", code=exc.code) from exc
        except RuntimeError as exc:
            raise ConnectionClosedError("disconnected") from exc
        if message["type"] == "websocket.disconnect":
            code = message.get("code")
            raise ConnectionClosedError(
                f"disconnected ({code})", code=code if isinstance(code, int) else None
            )
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"").decode("utf-8", "replace")

    async def send(self, message: str) -> None:
        try:
            await self._ws.send_text(message)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise ConnectionClosedError("disconnected") from exc

    async def close(self, code: int, reason: str) -> None:
        # The server's close also ends a ``receive`` waiting in another task (with a disconnect).
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._ws.close(code, reason)


def closed_error(exc: WebSocketsConnectionClosed) -> ConnectionClosedError:
    """``websockets``' close, with its code and who closed first (without a close frame
    either way: 1006, by no one)."""
    received, sent = exc.rcvd, exc.sent
    if received is not None and (sent is None or exc.rcvd_then_sent):
        return ConnectionClosedError(str(exc), code=received.code, by_station=True)
    if sent is not None:
        return ConnectionClosedError(str(exc), code=sent.code, by_station=False)
    return ConnectionClosedError(str(exc), code=1006)


def websockets_connection(ws: Connection) -> WebsocketsConnection:
    return WebsocketsConnection(ws)


def starlette_connection(websocket: WebSocket) -> StarletteConnection:
    return StarletteConnection(websocket)
