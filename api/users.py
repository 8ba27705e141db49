"""Per-user energy for billing: a user pseudonym's sessions over a window with the energy the
meter counted and its billing confidence, as JSON or CSV (``?format=csv`` or
``Accept: text/csv``); the sessions whose owner or energy is in doubt listed apart.

Pseudonyms only: the path takes the 32 hex digits a pseudonym has and nothing else, so a clear
card number sent by mistake is refused without being echoed, stored or logged. A billing system
that knows the card computes its pseudonym itself with ``chargewatch pseudonym``.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from api.deps import require
from api.network_query import Network
from api.network_schemas import BilledSessionOut, UserEnergyOut
from api.query import READ_RESPONSES, WindowParams
from chargewatch.roles import Role

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1",
    tags=["billing"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=READ_RESPONSES,
)

CSV_COLUMNS = (
    "pseudonym",
    "session_id",
    "station_id",
    "connector_id",
    "start",
    "stop",
    "energy_wh",
    "energy_power_wh",
    "billing_confidence",
    "billing_notes",
    "flagged_kinds",
    "review",
)
_ENERGY: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": ",".join(CSV_COLUMNS) + "\n",
            }
        },
        "description": "JSON, or CSV: a header line, then a row per session (those needing "
        "review last, with `review` filled in; lists joined with `;`)",
    }
}
_FORMULA_STARTS = frozenset("=+-@\t\r")
Pseudonym = Annotated[
    str,
    Path(
        pattern="^[0-9a-f]{32}$",
        description="The user's pseudonym: 32 lowercase hex digits (`chargewatch pseudonym`).",
    ),
]


@router.get("/users/{pseudonym}/energy", response_model=UserEnergyOut, responses=_ENERGY)
def user_energy(
    network: Network,
    window: WindowParams,
    pseudonym: Pseudonym,
    format: Annotated[
        Literal["json", "csv"] | None,
        Query(description="`csv` for CSV; by default the `Accept` header decides (JSON)."),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    """The sessions of one user that started in the window, oldest first."""
    answer = UserEnergyOut.of(network.user_energy(pseudonym, window.since_ns, window.until_ns))
    wants_csv = format == "csv" or (format is None and "text/csv" in (accept or ""))
    if not wants_csv:
        return answer
    return Response(content=_csv(answer), media_type="text/csv; charset=utf-8")


def _csv(answer: UserEnergyOut) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for session in [*answer.sessions, *answer.needs_review]:
        writer.writerow(_row(answer.pseudonym, session))
    return out.getvalue()


def _row(pseudonym: str, s: BilledSessionOut) -> list[object]:
    return [
        pseudonym,
        _text(s.session_id),
        _text(s.station_id),
        s.connector_id,
        s.start,
        s.stop or "",
        "" if s.energy_wh is None else s.energy_wh,
        "" if s.energy_power_wh is None else s.energy_power_wh,
        "" if s.billing_confidence is None else s.billing_confidence,
        _text(";".join(s.billing_notes)),
        ";".join(s.flagged_kinds),
        ";".join(s.review),
    ]


def _text(value: str) -> str:
    """Text as a spreadsheet shows it, never runs it: ids come from chargers, and a cell that
    starts with ``= + - @`` is a formula to Excel and LibreOffice (OWASP: CSV injection)."""
    return "'" + value if value[:1] in _FORMULA_STARTS else value
