"""Adapters from WebSocket libraries to ``OcppConnection``: text frames, ConnectionClosedError."""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed as WebSocketsConnectionClosed

from .interface import ConnectionClosedError

__all__ = [
    "StarletteConnection",
    "WebsocketsConnection",
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
            raise ConnectionClosedError(str(exc)) from exc
        # OCPP-J sends text frames; a binary one is decoded so that it fails as a bad frame.
        return message if isinstance(message, str) else bytes(message).decode("utf-8", "replace")

    async def send(self, message: str) -> None:
        try:
            await self._ws.send(message)
        except WebSocketsConnectionClosed as exc:
            raise ConnectionClosedError(str(exc)) from exc

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)  # websockets' close never raises for a closed one


class StarletteConnection:
    """A Starlette/FastAPI ``WebSocket`` that the route has already accepted."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def recv(self) -> str:
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise ConnectionClosedError("disconnected") from exc
        if message["type"] == "websocket.disconnect":
            raise ConnectionClosedError(f"disconnected ({message.get('code')})")
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


def websockets_connection(ws: Connection) -> WebsocketsConnection:
    return WebsocketsConnection(ws)


def starlette_connection(websocket: WebSocket) -> StarletteConnection:
    return StarletteConnection(websocket)
