"""``/ocpp/{station_id}``: the OCPP-J WebSocket endpoint (subprotocols ``ocpp1.6``, ``ocpp2.0.1``).

The route chooses the subprotocol and checks the station's credentials (OCPP security profile 1:
HTTP Basic on the upgrade, the station's identity as the user name); the conversation itself is
the gateway's, which ``service`` injects as an ``OcppEndpoint``.
"""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, WebSocket

from api.deps import OcppEndpoint

router = APIRouter(tags=["ocpp"])

# WebSocket close codes (RFC 6455): protocol error, policy violation.
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY_VIOLATION = 1008


@router.websocket("/ocpp/{station_id}")
async def ocpp_endpoint(websocket: WebSocket, station_id: str) -> None:
    endpoint: OcppEndpoint | None = websocket.app.state.services.ocpp
    if endpoint is None:
        await websocket.close(code=CLOSE_POLICY_VIOLATION, reason="no OCPP endpoint here")
        return
    requested = websocket.scope.get("subprotocols") or []
    chosen = next((p for p in endpoint.subprotocols if p in requested), None)
    if chosen is None:
        await websocket.close(code=CLOSE_PROTOCOL_ERROR, reason="no supported OCPP subprotocol")
        return
    if endpoint.station_auth:
        password = basic_password(station_id, websocket.headers.get("authorization", ""))
        if password is None or not endpoint.check_password(station_id, password):
            await websocket.close(
                code=CLOSE_POLICY_VIOLATION, reason="unknown station or wrong password"
            )
            return
    await websocket.accept(subprotocol=chosen)
    await endpoint.serve(station_id, chosen, websocket)


def basic_password(station_id: str, header: str) -> str | None:
    """The password of an HTTP Basic ``Authorization`` header whose user is ``station_id``;
    None when the header is missing, malformed or names another user."""
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return password if user == station_id else None
