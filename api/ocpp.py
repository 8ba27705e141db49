"""``/ocpp/{station_id}``: the OCPP-J WebSocket endpoint (subprotocols ``ocpp1.6``, ``ocpp2.0.1``).

Before the upgrade is accepted, the injected ``OcppEndpoint`` (the gateway, from ``service``)
admits or refuses the station: its id, the subprotocols it offers, and with OCPP security
profiles 1 and 2 its HTTP Basic credentials (the station's identity as the user name). A refused
upgrade gets an HTTP answer with the reason as its body: 404 for an id that cannot be a
station's (OCPP-J answers an unknown identity so), 401 for missing or wrong credentials, 429
after repeated failures and 503 when the checks are overloaded (both with ``Retry-After``). A
station offering none of our subprotocols is accepted without one and closed at once with 1002,
as OCPP-J prescribes. The conversation itself is the gateway's.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, WebSocket
from starlette.responses import PlainTextResponse

from api.deps import OcppEndpoint

router = APIRouter(tags=["ocpp"])

# WebSocket close codes (RFC 6455): protocol error, policy violation.
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY_VIOLATION = 1008
_STATUS = {
    "bad_station_id": 404,
    "no_credentials": 401,
    "wrong_password": 401,
    "throttled": 429,
    "busy": 503,
}


# ``:path``: an id with a ``/`` (or none at all) reaches the admission too, which refuses it with
# 404 and the reason, rather than matching no route (a bare 403).
@router.websocket("/ocpp/{station_id:path}")
async def ocpp_endpoint(websocket: WebSocket, station_id: str) -> None:
    endpoint: OcppEndpoint | None = websocket.app.state.services.ocpp
    if endpoint is None:
        await websocket.close(code=CLOSE_POLICY_VIOLATION, reason="no OCPP endpoint here")
        return
    admission = await endpoint.admit(
        station_id,
        websocket.client.host if websocket.client is not None else "unknown",
        websocket.scope.get("subprotocols") or [],
        basic_credentials(websocket.headers.get("authorization", "")),
    )
    if admission.subprotocol is not None:
        await websocket.accept(subprotocol=admission.subprotocol)
        await endpoint.serve(station_id, admission.subprotocol, websocket)
    elif admission.refusal == "no_subprotocol":
        await websocket.accept()
        await websocket.close(code=CLOSE_PROTOCOL_ERROR, reason=admission.message)
    else:
        await _deny(websocket, admission.refusal, admission.message, admission.retry_after_s)


async def _deny(
    websocket: WebSocket, refusal: str | None, message: str, retry_after_s: int | None
) -> None:
    """Answer the upgrade with an HTTP error and the reason (or 403, where a server cannot)."""
    status = _STATUS.get(refusal or "", 403)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    try:
        await websocket.send_denial_response(
            PlainTextResponse(message + "\n", status_code=status, headers=headers)
        )
    except RuntimeError:  # the server lacks the denial-response extension: a bare 403
        await websocket.close(code=CLOSE_POLICY_VIOLATION, reason=message)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """The (user, password) of an HTTP Basic ``Authorization`` header; None when it is missing
    or malformed."""
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64 (or not even ASCII: headers arrive as Latin-1), not UTF-8
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None
