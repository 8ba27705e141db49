"""The session catalogue on SQLite and on the PostgreSQL that CI runs: rows replaced whole,
filters, keyset pages that survive inserts, rankings by score, cursors that cannot be forged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from chargewatch.catalog import (
    CursorError,
    KindVerdict,
    SessionRow,
    get_session,
    list_sessions,
    rank_sessions,
    sessions_of_pseudonym,
    upsert_sessions,
)
from chargewatch.state import StateStore
from tests.conftest import postgres_database

H = 3600 * 1_000_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        yield state
        state.close()
        return
    with postgres_database("cw_catalog") as url:
        state = StateStore(url)
        yield state
        state.close()


def verdict(kind: str, score: float | None, flagged: bool = False) -> KindVerdict:
    return KindVerdict(
        kind=kind,
        score=score,
        flagged=flagged,
        start_ns=10 if flagged else None,
        end_ns=20 if flagged else None,
        reason="power 0 W for 25 min" if flagged else None,
    )


def row(
    session_id: str,
    start_ns: int,
    *,
    station: str = "ST-1",
    connector: int = 1,
    user: str | None = "u1",
    stall: float | None = 0.0,
) -> SessionRow:
    flagged = stall is not None and stall >= 0.5
    return SessionRow(
        session_id=session_id,
        station_id=station,
        connector_id=connector,
        start_ns=start_ns,
        stop_ns=start_ns + H,
        id_pseudonym=user,
        energy_register_wh=12_000.0,
        energy_power_wh=11_900.0,
        billing_confidence=1.0,
        billing_notes=(),
        duration_s=3600.0,
        flagged_kinds=("stall",) if flagged else (),
        updated_at_ns=1,
        verdicts=(verdict("stall", stall, flagged), verdict("meter_jump", 0.0)),
    )


def test_a_session_judged_again_replaces_its_row_and_verdicts(store: StateStore) -> None:
    first = row("s1", 5 * H, stall=0.9)
    upsert_sessions(store, [first])
    assert get_session(store, "s1") == first
    again = replace(
        first,
        stop_ns=None,
        energy_power_wh=float("nan"),  # not computed: stored as None
        billing_confidence=0.56,
        billing_notes=("gap of 12 min between readings", "timestamps out of arrival order"),
        flagged_kinds=(),
        updated_at_ns=2,
        verdicts=(verdict("meter_jump", None),),
    )
    upsert_sessions(store, [again])
    assert get_session(store, "s1") == replace(again, energy_power_wh=None)
    assert get_session(store, "nope") is None
    assert list_sessions(store, kinds=["stall"]) == ([], None)


def test_filters_and_pages_newest_first(store: StateStore) -> None:
    rows = [
        row(f"s{i:02d}", i * H, station=f"ST-{i % 3}", connector=i % 2, user=f"u{i % 4}")
        for i in range(20)
    ]
    rows[7] = row("s07", 7 * H, station="ST-1", connector=1, user="u3", stall=0.8)
    upsert_sessions(store, rows)

    page, cursor = list_sessions(store, limit=6)
    seen = [r.session_id for r in page]
    while cursor is not None:
        # a session inserted between two pages neither shifts nor repeats one
        upsert_sessions(store, [row(f"new-{len(seen)}", 100 * H, station="ST-9", user=None)])
        page, cursor = list_sessions(store, after=cursor, limit=6)
        seen += [r.session_id for r in page]
    assert seen == [f"s{i:02d}" for i in reversed(range(20))]

    def ids(**filters: object) -> list[str]:
        found, _ = list_sessions(store, **filters)  # type: ignore[arg-type]
        return [r.session_id for r in found]

    assert ids(station_id="ST-1", connector_id=1) == ["s19", "s13", "s07", "s01"]
    assert ids(since_ns=3 * H, until_ns=6 * H) == ["s05", "s04", "s03"]
    assert ids(pseudonym="u3", until_ns=20 * H) == ["s19", "s15", "s11", "s07", "s03"]
    assert ids(flagged_only=True) == ids(kinds=["stall", "data_gap"]) == ["s07"]
    assert ids(kinds=["data_gap"]) == []
    users = sessions_of_pseudonym(store, "u3", 0, 12 * H)
    assert [r.session_id for r in users] == ["s03", "s07", "s11"]  # oldest first


def test_ranking_by_score_pages_and_leaves_out_the_unscored(store: StateStore) -> None:
    scores = [0.1, 0.9, None, 0.5, 0.9, 0.3]
    upsert_sessions(store, [row(f"s{i}", i * H, stall=s) for i, s in enumerate(scores)])
    page, cursor = rank_sessions(store, "stall", limit=2)
    ranked = [r.session_id for r in page]
    while cursor is not None:
        page, cursor = rank_sessions(store, "stall", after=cursor, limit=2)
        ranked += [r.session_id for r in page]
    assert ranked == ["s4", "s1", "s3", "s5", "s0"]
    top, _ = rank_sessions(store, "stall", min_score=0.5, since_ns=2 * H)
    assert [r.session_id for r in top] == ["s4", "s3"]
    assert [v.kind for v in top[0].verdicts] == ["stall", "meter_jump"]  # in contract order


@pytest.mark.parametrize("cursor", ["", "garbage!", "WyJ4IiwxLCJzIl0", "WzEsMiwzXQ"])
def test_a_forged_or_foreign_cursor_is_refused(store: StateStore, cursor: str) -> None:
    with pytest.raises(CursorError):
        list_sessions(store, after=cursor)


def test_a_cursor_of_one_order_is_refused_by_another(store: StateStore) -> None:
    upsert_sessions(store, [row(f"s{i}", i * H, stall=0.1 * i) for i in range(3)])
    _, by_time = list_sessions(store, limit=1)
    _, by_score = rank_sessions(store, "stall", limit=1)
    assert by_time is not None and by_score is not None
    with pytest.raises(CursorError):
        rank_sessions(store, "stall", after=by_time)
    with pytest.raises(CursorError):
        list_sessions(store, after=by_score)
    with pytest.raises(CursorError):
        rank_sessions(store, "meter_jump", after=by_score)


def test_a_catalogue_from_before_rows_carried_verdicts_gets_them(store: StateStore) -> None:
    first = row("s1", 5 * H, stall=0.9)
    upsert_sessions(store, [first])
    with store.engine.begin() as connection:  # the first version's table had no such column
        connection.execute(text("ALTER TABLE session_catalog DROP COLUMN verdicts"))
    reopened = StateStore(store.engine.url.render_as_string(hide_password=False))
    try:
        assert get_session(reopened, "s1") == first
        upsert_sessions(reopened, [replace(first, updated_at_ns=9)])
        assert get_session(reopened, "s1") == replace(first, updated_at_ns=9)
    finally:
        reopened.close()
