"""Row-wise reductions the detectors and profiles share, against NumPy's own definitions."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analytics.detectors.reductions import row_median, row_percentile

_VALUES = st.one_of(
    st.just(np.nan),
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1.0, 7_400.0, 11_000.0]),  # ties, as power readings have them
)


@settings(max_examples=300, deadline=None)
@given(
    values=hnp.arrays(
        np.float64, st.tuples(st.integers(1, 12), st.integers(0, 30)), elements=_VALUES
    ),
    q=st.one_of(st.sampled_from([0.0, 50.0, 80.0, 95.0, 100.0]), st.floats(0.0, 100.0)),
)
def test_row_percentile_is_nanpercentile_bit_for_bit(values: np.ndarray, q: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        expected = np.nanpercentile(values, q, axis=1) if values.shape[1] else None
    got = row_percentile(values, q)
    if expected is None:
        assert np.isnan(got).all()
    else:
        np.testing.assert_array_equal(got, expected)


def test_row_percentile_of_empty_rows_is_nan_and_quiet() -> None:
    values = np.array([[np.nan, np.nan], [3.0, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = row_percentile(values, 80.0)
    assert np.isnan(got[0]) and got[1] == 3.0
    assert np.array_equal(row_median(values), got, equal_nan=True)
