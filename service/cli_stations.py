"""Station metadata and fleet cards on the command line (CONTRACTS.md section 5).

- ``chargewatch stations import STATIONS.csv``: each station's site, optional coordinates and
  declared rated power into the state database (``ingest.stations_import`` checks the file,
  ``chargewatch.site_store`` keeps it). Importing again replaces a station's row.
- ``chargewatch users mark-fleet PSEUDONYM`` / ``unmark-fleet`` / ``fleet``: pseudonyms of
  fleet cards (several vehicles on one card, on purpose): ``concurrent_id_tag`` still flags
  their overlaps, as the contract says, at a lower score, and says why. A pseudonym, not a card
  number, is given: ``chargewatch pseudonym`` turns card numbers into pseudonyms.

``service.cli`` registers these commands (``add_station_commands``); the helpers it shares
(``fail``, ``guarded``, ``stdout``) are imported when a command runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

# A pseudonym is the first 128 bits of an HMAC-SHA256 in hex (``ingest.pseudonym``).
_PSEUDONYM = re.compile(r"[0-9a-f]{32}")

users_app = typer.Typer(help="Users by pseudonym: fleet cards.")


def add_station_commands(app: typer.Typer, stations_app: typer.Typer) -> None:
    """Register ``stations import`` on ``stations_app`` and the ``users`` group on ``app``."""
    stations_app.command("import")(stations_import)
    app.add_typer(users_app, name="users")


def stations_import(
    path: Annotated[
        Path,
        typer.Argument(help="CSV: station_id, site_id[, latitude, longitude][, rated_power_w]."),
    ],
) -> None:
    """Import station metadata (site, coordinates, declared rated power) into the state
    database. Exit 0: every row imported; 1: some rows refused (each named with its line)."""
    from chargewatch.settings import load_settings
    from chargewatch.site_store import store_stations
    from chargewatch.state import StateStore
    from ingest.stations_import import read_stations
    from service.cli import EXIT_REJECTED, guarded, stdout

    read = guarded(lambda: read_stations(path))
    for problem in read.problems:
        stdout.print(f"refused {path.name} {problem}", markup=False)
    settings = guarded(load_settings)
    store = guarded(lambda: StateStore(settings.state_db_url))
    try:
        count = guarded(lambda: store_stations(store, read.stations))
    finally:
        store.close()
    sites = len({s.site_id for s in read.stations})
    stdout.print(
        f"imported {count} stations at {sites} sites, {len(read.problems)} rows refused",
        markup=False,
    )
    if read.problems:
        raise typer.Exit(EXIT_REJECTED)


def _pseudonym(value: str) -> str:
    from service.cli import fail

    if not _PSEUDONYM.fullmatch(value):
        fail(
            "PSEUDONYM must be 32 lower-case hex digits, as the API and the catalogue show it "
            "(a card number is turned into one by: chargewatch pseudonym)"
        )
    return value


@users_app.command("mark-fleet")
def users_mark_fleet(
    pseudonym: Annotated[str, typer.Argument(help="The card's pseudonym (32 hex digits).")],
) -> None:
    """Mark a pseudonym as a fleet card: its concurrent sessions score lower, and say why."""
    from chargewatch.settings import load_settings
    from chargewatch.site_store import mark_fleet
    from chargewatch.state import StateStore
    from service.cli import guarded, stdout

    pseudonym = _pseudonym(pseudonym)
    settings = guarded(load_settings)
    store = guarded(lambda: StateStore(settings.state_db_url))
    try:
        new = guarded(lambda: mark_fleet(store, pseudonym))
    finally:
        store.close()
    stdout.print(
        f"{pseudonym} {'marked' if new else 'was already marked'} as a fleet card", markup=False
    )


@users_app.command("unmark-fleet")
def users_unmark_fleet(
    pseudonym: Annotated[str, typer.Argument(help="The card's pseudonym (32 hex digits).")],
) -> None:
    """Remove a fleet-card mark."""
    from chargewatch.settings import load_settings
    from chargewatch.site_store import unmark_fleet
    from chargewatch.state import StateStore
    from service.cli import fail, guarded, stdout

    pseudonym = _pseudonym(pseudonym)
    settings = guarded(load_settings)
    store = guarded(lambda: StateStore(settings.state_db_url))
    try:
        removed = guarded(lambda: unmark_fleet(store, pseudonym))
    finally:
        store.close()
    if not removed:
        fail(f"{pseudonym} is not marked as a fleet card")
    stdout.print(f"{pseudonym} is no longer marked as a fleet card", markup=False)


@users_app.command("fleet")
def users_fleet() -> None:
    """Print the pseudonyms marked as fleet cards, one a line."""
    from chargewatch.settings import load_settings
    from chargewatch.site_store import fleet_cards
    from chargewatch.state import StateStore
    from service.cli import guarded, stdout

    settings = guarded(load_settings)
    store = guarded(lambda: StateStore(settings.state_db_url))
    try:
        cards = guarded(lambda: fleet_cards(store))
    finally:
        store.close()
    for card in cards:
        stdout.print(card, markup=False)
