"""What an API key may do: read (viewer), also send events (operator), also manage (admin).

Apart from the state database (``chargewatch.state``) so that the CLI and the API can name a
role without loading SQLAlchemy.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
