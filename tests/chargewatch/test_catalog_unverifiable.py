"""Billing confidence may be unknown ("unverifiable": nothing could check the register): the
catalogue stores and returns None, also in a catalogue made when the column was NOT NULL."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Table, create_engine, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateTable

from chargewatch.catalog import CatalogEntry, KindVerdict, SessionRow, get_session, upsert_sessions
from chargewatch.state import StateStore
from tests.conftest import postgres_database

H = 3600 * 1_000_000_000

ROW = SessionRow(
    session_id="s1",
    station_id="ST-1",
    connector_id=1,
    start_ns=5 * H,
    stop_ns=6 * H,
    id_pseudonym="u1",
    energy_register_wh=12_000.0,
    energy_power_wh=None,
    billing_confidence=None,
    billing_notes=("unverifiable: no power values to check the register against",),
    duration_s=3600.0,
    flagged_kinds=(),
    updated_at_ns=1,
    verdicts=(KindVerdict("meter_jump", 0.0, False, None, None, None),),
)


def test_an_unverifiable_confidence_is_stored_as_none(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        upsert_sessions(store, [ROW, replace(ROW, session_id="s2", billing_confidence=0.7)])
        assert get_session(store, "s1") == ROW
        got = get_session(store, "s2")
        assert got is not None and got.billing_confidence == 0.7
    finally:
        store.close()


def test_a_catalogue_made_with_a_not_null_confidence_takes_none_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    table = CatalogEntry.__table__
    assert isinstance(table, Table)
    with sqlite3.connect(path) as old:  # the table as the first version made it
        ddl = str(CreateTable(table).compile(dialect=sqlite.dialect()))
        old.execute(ddl.replace("billing_confidence FLOAT,", "billing_confidence FLOAT NOT NULL,"))
        old.execute(
            "INSERT INTO session_catalog (session_id, station_id, connector_id, start_ns, "
            "billing_confidence, billing_notes, duration_s, flagged_kinds, flagged, "
            "updated_at_ns, verdicts) VALUES ('old', 'ST-1', 1, 7, 0.9, '[]', 60.0, '', 0, 1, "
            "'[]')"
        )
    store = StateStore(f"sqlite:///{path}")
    try:
        upsert_sessions(store, [ROW])
        assert get_session(store, "s1") == ROW
        kept = get_session(store, "old")
        assert kept is not None and kept.billing_confidence == 0.9
    finally:
        store.close()


def test_a_postgresql_catalogue_made_with_a_not_null_confidence_takes_none() -> None:
    table = CatalogEntry.__table__
    assert isinstance(table, Table)
    with postgres_database("cw_catalog_migrate") as url:
        engine = create_engine(url)
        try:
            with engine.begin() as old:  # the table as the first version made it
                ddl = str(CreateTable(table).compile(dialect=engine.dialect))
                assert "billing_confidence FLOAT," in ddl
                old.execute(
                    text(
                        ddl.replace(
                            "billing_confidence FLOAT,", "billing_confidence FLOAT NOT NULL,"
                        )
                    )
                )
                old.execute(
                    text(
                        "INSERT INTO session_catalog (session_id, station_id, connector_id, "
                        "start_ns, billing_confidence, billing_notes, duration_s, flagged_kinds, "
                        "flagged, updated_at_ns, verdicts) VALUES ('old', 'ST-1', 1, 7, 0.9, "
                        "'[]', 60.0, '', false, 1, '[]')"
                    )
                )
        finally:
            engine.dispose()
        store = StateStore(url)
        try:
            upsert_sessions(store, [ROW])
            assert get_session(store, "s1") == ROW
            kept = get_session(store, "old")
            assert kept is not None and kept.billing_confidence == 0.9
        finally:
            store.close()
