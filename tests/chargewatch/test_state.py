"""The state database, on SQLite and on the PostgreSQL that CI runs (127.0.0.1:5432)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from chargewatch.roles import Role
from chargewatch.state import StateError, StateStore
from tests.conftest import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        yield state
        state.close()
        return
    with postgres_database("cw_state") as url:
        state = StateStore(url)
        yield state
        state.close()


def test_transaction_ids_are_unique_under_concurrency(store: StateStore) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: store.next_value(), range(200)))
    assert sorted(ids) == list(range(1, 201))


def test_transaction_ids_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first = StateStore(url)
    assert [first.next_value() for _ in range(3)] == [1, 2, 3]
    first.close()
    second = StateStore(url)
    assert second.next_value() == 4
    second.close()


def test_station_passwords_are_stored_hashed_and_checked(store: StateStore) -> None:
    store.set_station_password("CP-1", "correct horse")
    assert store.station_known("CP-1")
    assert store.check_station_password("CP-1", "correct horse")
    assert not store.check_station_password("CP-1", "wrong")
    assert not store.check_station_password("CP-2", "correct horse")
    with store.engine.connect() as connection:
        stored = connection.execute(text("SELECT password_hash FROM stations")).scalar_one()
    assert "correct horse" not in stored and stored.startswith("pbkdf2_sha256$")


def test_api_keys_are_shown_once_and_stored_hashed(store: StateStore) -> None:
    key = store.create_api_key(Role.OPERATOR)
    assert store.role_of(key) is Role.OPERATOR
    assert store.role_of(key + "x") is None
    assert store.role_of("nonsense") is None
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT key_id, key_hash FROM api_keys")).all()
    assert all(key.split("_", 2)[2] not in row.key_hash for row in rows)


def test_an_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(StateError, match="cannot open the state database"):
        StateStore("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_job_cursors_start_empty_and_keep_their_value(store: StateStore) -> None:
    assert store.cursor("detect") is None
    store.set_cursor("detect", 1_795_508_130_250_000_000)
    store.set_cursor("detect", 1_795_508_160_250_000_000)
    assert store.cursor("detect") == 1_795_508_160_250_000_000


def test_several_cursors_are_stored_together_new_and_updated(store: StateStore) -> None:
    store.set_cursor("detect:0", 1)
    store.set_cursors({"detect:0": 5, "detect:1": 7, "detect:2": 9})
    store.set_cursors({"detect:1": 8})
    store.set_cursors({})
    assert [store.cursor(f"detect:{p}") for p in range(3)] == [5, 8, 9]
