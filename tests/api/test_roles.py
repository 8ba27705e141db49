"""The role matrix of the read API: every GET route of the service x every role, no key, a
revoked key. Routes are taken from the application itself, so a route added later is in the
matrix at once (and fails here until ``SAMPLES`` knows its path parameters). Each is called
with the fleet's window where it takes one (``since``/``until``) and no other parameter: viewer
and up are let in (the session routes answer 200), no key and a revoked key get 401."""

from __future__ import annotations

import re

import pytest

from chargewatch.flags import Flag
from chargewatch.roles import Role
from chargewatch.verdicts import flag_id

from .conftest import HAND_SESSION, HAND_STATION, ReadFleet

OPEN = {"/healthz", "/openapi.json"}  # no key, on purpose (README)
SAMPLES = {"session_id": HAND_SESSION, "station_id": HAND_STATION}


def read_routes(fleet: ReadFleet) -> list[str]:
    """Every GET path the service documents (``/openapi.json``), but the open ones."""
    paths = fleet.client.get("/openapi.json").json()["paths"]
    return sorted(path for path, ops in paths.items() if "get" in ops and path not in OPEN)


def window_for(path: str, fleet: ReadFleet) -> dict[str, str]:
    """The fleet's window, as far as the route takes it: routes refuse parameters they do not
    take (``api.deps.strict_query``)."""
    ops = fleet.client.get("/openapi.json").json()["paths"][path]["get"]
    taken = {p["name"] for p in ops.get("parameters", []) if p.get("in") == "query"}
    return {name: value for name, value in fleet.window.items() if name in taken}


def concrete(path: str, fleet: ReadFleet) -> str:
    samples = {**SAMPLES, "pseudonym": fleet.pseudonym}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in samples:
            pytest.fail(f"{path}: add a sample value for {{{name}}} to SAMPLES")
        return samples[name]

    return re.sub(r"\{(\w+)\}", fill, path)


SESSION_ROUTES = (
    "/api/v1/sessions",
    "/api/v1/sessions/{session_id}",
    "/api/v1/sessions/{session_id}/profile",
    "/api/v1/sessions/{session_id}/profile.png",
    "/api/v1/flags",
    "/api/v1/scores",
)


def test_the_matrix_covers_the_read_routes(read_fleet: ReadFleet) -> None:
    assert set(SESSION_ROUTES) <= set(read_routes(read_fleet))


@pytest.mark.parametrize("who", ["no key", "revoked", *[role.value for role in Role]])
def test_every_read_route_for_every_role(read_fleet: ReadFleet, who: str) -> None:
    key: str | None = None if who == "no key" else who
    if who in set(Role):
        key = f"matrix-{who}"
        read_fleet.fresh_key(key, Role(who))
    for path in read_routes(read_fleet):
        url = concrete(path, read_fleet)
        answer = read_fleet.get(url, key, **window_for(path, read_fleet))
        if who in ("no key", "revoked"):
            assert answer.status_code == 401, f"{who} on {url}: {answer.status_code}"
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.json()["detail"] in (
                "an API key is required (Authorization: Bearer <key>)",
                "unknown or revoked API key",
            )
        elif path in SESSION_ROUTES:  # viewer and up read everything
            assert answer.status_code == 200, f"{who} on {url}: {answer.status_code} {answer.text}"
        else:  # other stages' routes: the key is let in (what follows is their tests' business)
            assert answer.status_code not in (401, 403), f"{who} on {url}: {answer.status_code}"


def test_the_key_may_come_as_x_api_key(read_fleet: ReadFleet) -> None:
    key = read_fleet.fresh_key("x-api-key")
    for path in read_routes(read_fleet):
        url = concrete(path, read_fleet)
        answer = read_fleet.client.get(
            url, params=window_for(path, read_fleet), headers={"X-API-Key": key}
        )
        assert answer.status_code not in (401, 403), f"{url}: {answer.status_code}"
        if path in SESSION_ROUTES:
            assert answer.status_code == 200, f"{url}: {answer.status_code}"


def test_judging_a_flag_needs_an_operator(read_fleet: ReadFleet) -> None:
    """``POST /flags/{flag}/verdict``: no key and a revoked key 401, a viewer 403; operator and
    admin are let in (a flag that does not exist: 404, so the fleet's verdicts stay as they are).
    """
    nowhere = flag_id(Flag("no-such-session", "NOWHERE-1", 1, "stall", 0.5, 0, 1, ""))
    path = f"/api/v1/flags/{nowhere}/verdict"
    posts = read_fleet.client.get("/openapi.json").json()["paths"]
    assert "post" in posts["/api/v1/flags/{flag}/verdict"]
    expected = {"no key": 401, "revoked": 401, "viewer": 403, "operator": 404, "admin": 404}
    for who, status in expected.items():
        key = None if who == "no key" else who
        if who in set(Role):
            key = f"verdict-{who}"
            read_fleet.fresh_key(key, Role(who))
        headers = {} if key is None else {"Authorization": f"Bearer {read_fleet.keys[key]}"}
        body = {"verdict": "confirmed", "who": "matrix"}
        answer = read_fleet.client.post(path, json=body, headers=headers)
        assert answer.status_code == status, f"{who}: {answer.status_code} {answer.text}"
