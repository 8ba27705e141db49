"""Properties every detector keeps, whatever the sessions: rows are judged independently (but
for the pairs of concurrent_id_tag), a flat constant session is never a meter fault, and bad
rows give defined results instead of exceptions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.batch import NO_TIME, SessionBatch
from analytics.detectors import EarlyTaper, KindResult, detect, fit_detectors
from tests.analytics.detectors.helpers import (
    NOW_NS,
    Spec,
    charge,
    from_power,
    make_batch,
    with_,
)

METER_KINDS = {"meter_stuck", "meter_backwards", "meter_jump", "meter_mismatch"}


@st.composite
def sessions(draw: st.DrawFn, index: int = 0) -> Spec:
    power_w = draw(st.sampled_from([3_700.0, 7_400.0, 11_000.0, 22_000.0, 50_000.0, 150_000.0]))
    interval_s = draw(st.sampled_from([10.0, 30.0, 60.0]))
    spec = charge(
        power_w=power_w,
        minutes=draw(st.integers(5, 90)),
        interval_s=interval_s,
        noise=draw(st.sampled_from([0.0, 0.005])),
        seed=draw(st.integers(0, 1000)),
        session_id=f"S{index}-{draw(st.integers(0, 10**6))}",
        station_id=f"ST{draw(st.integers(0, 3))}",
        id_pseudonym=draw(st.sampled_from([None, "U1", "U2", "U3"])),
        auth_result=draw(st.sampled_from([None, "Accepted", "Accepted", "Blocked"])),
        offset_s=draw(st.floats(0.0, 7200.0)),
        soc0_pct=draw(st.sampled_from([None, 20.0])),
    )
    fault = draw(st.sampled_from(["none", "jump", "back", "gap", "stuck"]))
    e = np.asarray(spec.energy_wh, dtype=np.float64)
    k = e.size
    if fault == "jump" and k > 4:
        e[k // 2 :] += 50_000.0
    elif fault == "back" and k > 4:
        e[k // 2 :] -= 5_000.0
    elif fault == "stuck" and k > 12:
        e[k // 3 : k // 3 + 8] = e[k // 3]
    elif fault == "gap" and k > 30:
        keep = np.r_[0 : k // 3, k // 3 + 15 : k]
        return with_(
            spec,
            t_s=list(np.asarray(spec.t_s)[keep]),
            energy_wh=list(e[keep]),
            power_w=list(np.asarray(spec.power_w)[keep]),
            offered_w=list(np.asarray(spec.offered_w)[keep]),
            status=list(np.asarray(spec.status)[keep]),
            soc_pct=None if spec.soc_pct is None else list(np.asarray(spec.soc_pct)[keep]),
        )
    return with_(spec, energy_wh=list(e))


def row_view(result: KindResult, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    return (
        result.score[rows],
        result.flagged[rows],
        result.start_ns[rows],
        result.end_ns[rows],
        result.reason[rows],
    )


def assert_same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> None:
    np.testing.assert_allclose(a[0], b[0], rtol=1e-9, atol=1e-12, equal_nan=True)
    for x, y in zip(a[1:], b[1:], strict=True):
        assert list(x) == list(y)


@settings(max_examples=25, deadline=None)
@given(st.lists(sessions(), min_size=1, max_size=6, unique_by=lambda s: s.session_id))
def test_permuting_sessions_permutes_the_results(specs: list[Spec]) -> None:
    batch = make_batch(specs)
    detectors = fit_detectors(batch)
    perm = np.random.default_rng(len(specs)).permutation(len(specs))
    shuffled = batch.take(perm)
    for d in detectors:
        a = d.score(batch, now_ns=NOW_NS)
        b = d.score(shuffled, now_ns=NOW_NS)
        assert_same(row_view(a, perm), row_view(b, np.arange(len(specs))))


@settings(max_examples=25, deadline=None)
@given(
    st.lists(sessions(), min_size=1, max_size=5, unique_by=lambda s: s.session_id),
    sessions(index=99),
)
def test_adding_a_session_leaves_the_others_alone(specs: list[Spec], extra: Spec) -> None:
    before = make_batch(specs)
    after = make_batch([*specs, extra])
    detectors = fit_detectors(before)
    rows = np.arange(len(specs))
    for d in detectors:
        if d.kind == "concurrent_id_tag":  # pairs by design
            continue
        a = d.score(before, now_ns=NOW_NS)
        b = d.score(after, now_ns=NOW_NS)
        assert_same(row_view(a, rows), row_view(b, rows))


@settings(max_examples=25, deadline=None)
@given(st.lists(sessions(), min_size=1, max_size=6, unique_by=lambda s: s.session_id))
def test_scoring_in_blocks_of_rows_gives_the_same_results(specs: list[Spec]) -> None:
    """``detect`` scores per-row kinds a block of rows at a time: one row per block changes
    nothing."""
    batch = make_batch(specs)
    detectors = fit_detectors(batch)
    rows = np.arange(len(specs))
    whole = detect(batch, now_ns=NOW_NS, detectors=detectors)
    batch.extra.clear()
    blocks = detect(batch, now_ns=NOW_NS, detectors=detectors, block_cells=1)
    for a, b in zip(whole, blocks, strict=True):
        assert a.kind == b.kind
        assert_same(row_view(a, rows), row_view(b, rows))


@settings(max_examples=15, deadline=None)
@given(
    st.lists(sessions(), min_size=2, max_size=6, unique_by=lambda s: s.session_id),
    st.integers(2, 5),
)
def test_rows_of_like_length_scored_together_give_the_same_results(
    specs: list[Spec], block_rows: int
) -> None:
    """A batch that is mostly padding (one long session beside short ones) is scored in blocks
    of rows sorted by length, each cut to its longest row: the results are the same as each
    detector's on the whole padded batch, in the batch's row order."""
    long = charge(power_w=7_400.0, minutes=600, interval_s=10.0, session_id="LONG")
    batch = make_batch([specs[0], long, *specs[1:]])
    assert batch.valid.mean() < 0.5  # the compacted path is the one under test
    detectors = fit_detectors(batch)
    rows = np.arange(batch.n_sessions)
    blocks = detect(
        batch, now_ns=NOW_NS, detectors=detectors, block_cells=block_rows * batch.n_steps // 4
    )
    for d, b in zip(detectors, blocks, strict=True):
        batch.extra.clear()
        a = d.score(batch, now_ns=NOW_NS)
        assert a.kind == b.kind
        assert_same(row_view(a, rows), row_view(b, rows))


@settings(max_examples=10, deadline=None)
@given(st.lists(sessions(), min_size=2, max_size=6, unique_by=lambda s: s.session_id))
def test_early_taper_learns_the_same_bands_whatever_the_order_and_padding(
    specs: list[Spec],
) -> None:
    """EarlyTaper learns from a history a block of rows at a time (rows of like length when it
    is mostly padding): its bands depend on the rows' readings, not on their order nor on the
    padding after them."""
    long = charge(power_w=50_000.0, minutes=600, interval_s=10.0, soc0_pct=10.0, session_id="L")
    batch = make_batch([specs[0], long, *specs[1:]])
    perm = np.random.default_rng(len(specs)).permutation(batch.n_sessions)
    shuffled = batch.take(perm)
    columns: dict[str, Any] = {}
    for name in shuffled.__dataclass_fields__:
        if name == "extra":
            continue
        value = getattr(shuffled, name)
        if value.ndim == 2:  # 50 more columns of padding
            pad = np.nan if value.dtype.kind == "f" else 0
            value = np.pad(value, ((0, 0), (0, 50)), constant_values=pad)
        columns[name] = value
    wider = SessionBatch(**columns)
    assert batch.valid.mean() < 0.5  # learned from rows of like length, cut to their width
    a = EarlyTaper().fit(batch)
    b = EarlyTaper().fit(wider)
    assert a.band_count_.sum() > 0  # readings were binned: there was something to learn
    np.testing.assert_array_equal(a.band_, b.band_)
    np.testing.assert_array_equal(a.band_count_, b.band_count_)
    np.testing.assert_array_equal(a.band_learned_, b.band_learned_)


@settings(max_examples=40, deadline=None)
@given(
    register=st.floats(0.0, 1e9),
    power=st.sampled_from([0.0, 0.0, 5.0]),
    n=st.integers(1, 300),
    interval=st.sampled_from([1.0, 10.0, 60.0, 900.0]),
)
def test_a_flat_constant_session_is_never_a_meter_fault(
    register: float, power: float, n: int, interval: float
) -> None:
    t = np.arange(n) * interval
    spec = Spec(
        t_s=list(t),
        energy_wh=[register] * n,
        power_w=[power] * n,
        offered_w=[11_000.0] * n,
    )
    batch = make_batch([spec])
    for r in detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch)):
        if r.kind in METER_KINDS:
            assert not r.flagged[0], r.reason[0]


def bad_rows() -> list[Spec]:
    good = charge(power_w=7_400.0, minutes=60, session_id="good")
    mixed_t = np.concatenate((np.arange(0, 600, 10.0), 600 + np.arange(0, 3000, 60.0)))
    mixed = charge(power_w=7_400.0, minutes=1)
    n = mixed_t.size
    return [
        good,
        Spec(t_s=[0.0], energy_wh=[100.0], power_w=[7_000.0], session_id="one reading"),
        Spec(t_s=[], session_id="no readings"),
        Spec(t_s=[0.0, 60.0, 120.0], session_id="all NaN"),
        with_(charge(power_w=120_000.0, minutes=30, interval_s=15.0), session_id="DC, no SoC"),
        from_power(mixed_t, np.full(n, 7_400.0), offered_w=7_400.0, session_id="mixed intervals"),
        Spec(
            # the third reading's register (180) says it was read after the 120 of the one
            # stamped 60 s: its stamp of 30 s is a wrong clock
            t_s=[0.0, 60.0, 30.0, 90.0, 120.0],
            energy_wh=[0.0, 120.0, 180.0, 240.0, 300.0],
            power_w=[7_200.0] * 5,
            arrival=[0, 1, 2, 3, 4],
            session_id="out of order",
        ),
        Spec(
            # the same stamps, the register agreeing with them (60 Wh at 30 s): a reading
            # delivered late, not a wrong clock
            t_s=[0.0, 60.0, 30.0, 90.0, 120.0],
            energy_wh=[0.0, 120.0, 60.0, 180.0, 240.0],
            power_w=[7_200.0] * 5,
            arrival=[0, 1, 2, 3, 4],
            session_id="delivered late",
        ),
        with_(mixed, session_id=None, id_pseudonym=None, auth_result=None, start_s=None),
    ]


def test_bad_rows_give_defined_results() -> None:
    batch = make_batch(bad_rows())
    results = {r.kind: r for r in detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch))}
    ids = list(batch.session_id)
    for r in results.values():
        assert r.score.shape == (batch.n_sessions,)
        scored = ~np.isnan(r.score)
        assert np.all((r.score[scored] >= 0) & (r.score[scored] <= 1))
        assert not np.any(r.flagged & ~scored)
        # what cannot be judged says why
        assert all(isinstance(x, str) for x in r.reason[~scored])
        assert np.all((r.start_ns == NO_TIME) == ~r.flagged)
        assert not r.flagged[ids.index("good")]
    for row in ("one reading", "no readings", "all NaN"):
        i = ids.index(row)
        for kind in ("stall", "early_taper", "meter_mismatch"):
            assert np.isnan(results[kind].score[i]), (kind, row)
    assert np.isnan(results["early_taper"].score[ids.index("DC, no SoC")])
    assert "state of charge" in results["early_taper"].reason[ids.index("DC, no SoC")]
    assert not any(r.flagged[ids.index("mixed intervals")] for r in results.values())
    assert results["clock_fault"].flagged[ids.index("out of order")]
    assert not results["meter_backwards"].flagged[ids.index("out of order")]
    assert not any(r.flagged[ids.index("delivered late")] for r in results.values())


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_tiny_batches(n: int) -> None:
    batch = make_batch(bad_rows()[:n]) if n else make_batch([]).take(np.zeros(0, np.int64))
    for r in detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch)):
        assert r.score.shape == (n,)
