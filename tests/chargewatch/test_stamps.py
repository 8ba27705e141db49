"""``parse_stamps`` (NumPy, the columnar path's stamps) reads every text exactly as the polars
expressions it replaced (``stamp_ns`` and ``TS_SHAPE``): the same shape, the same time, the
same texts without one; and a stamp of that shape as Python reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from chargewatch.stamps import TS_SHAPE, parse_stamps, stamp_ns

EDGES = [
    "2026-11-24T08:15:30Z",
    "2026-11-24T08:15:30.250+01:00",
    "2026-11-24T08:15:30.123456789-05:30",
    "1969-12-31T23:59:59.9999999Z",  # before 1970, digits past the microsecond
    "1900-01-01T00:00:00+23:59",
    "2099-12-31T23:59:59.999999-23:59",
    "2000-02-29T12:00:00Z",  # leap years, and years that are not
    "1900-02-29T12:00:00Z",
    "2026-02-29T00:00:00Z",
    "2026-04-31T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-00-10T00:00:00Z",
    "2026-01-00T00:00:00Z",
    "2026-11-24T24:00:00Z",
    "2026-11-24T99:00:00Z",
    "2026-11-24T08:60:00Z",
    "2026-11-24T08:15:30",  # no zone
    "2026-11-24t08:15:30z",
    "2026-11-24 08:15:30Z",
    "2026-11-24T08:15:30.Z",
    "2026-11-24T08:15:30.1234567890Z",
    "2026-11-24T08:15:30+24:00",
    "2026-11-24T08:15:30+0100",
    "2026-11-24T08:15:30ZZ",
    " 2026-11-24T08:15:30Z",
    "1899-12-31T23:59:59Z",
    "2126-01-01T00:00:00Z",
    "\uff12026-11-24T08:15:30Z",  # a digit of another script (fullwidth 2)
    "2026-11-24T08:15:30.12345é+01:00",
    "2026-11-24T08:15:30\x00Z",
    "2026-11-24T08:15:30Z\x00",
    "2026-11-24T08:15",
    "",
    "x",
]


def assert_read_alike(texts: list[str | None]) -> None:
    series = pl.Series("ts", texts, dtype=pl.String)
    shaped, ts_ns, has_ts = parse_stamps(series)
    want = series.to_frame().select(
        shape=pl.col("ts").str.contains(TS_SHAPE).fill_null(False), ns=stamp_ns(pl.col("ts"))
    )
    assert shaped.tolist() == want["shape"].to_list()
    assert has_ts.tolist() == want["ns"].is_not_null().to_list()
    assert ts_ns.tolist() == want["ns"].fill_null(0).to_list()


def test_edge_cases_are_read_as_the_polars_expressions_read_them() -> None:
    assert_read_alike([*EDGES, None])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text("0123456789-:TZ.+ tz", max_size=40),
            st.sampled_from(EDGES).flatmap(
                lambda edge: st.tuples(
                    st.integers(0, len(edge)), st.text("0123456789-:TZ.+", max_size=2)
                ).map(lambda cut: edge[: cut[0]] + cut[1] + edge[cut[0] + len(cut[1]) :])
            ),
        ),
        max_size=30,
    )
)
def test_any_text_is_read_as_the_polars_expressions_read_it(texts: list[str | None]) -> None:
    assert_read_alike(texts)


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2099, 12, 31)),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
    st.integers(0, 9),
)
def test_a_stamp_of_the_shape_is_the_instant_python_reads(
    moment: datetime, offset_min: int, digits: int
) -> None:
    sign = "-" if offset_min < 0 else "+"
    hours, minutes = divmod(abs(offset_min), 60)
    fraction = f"{moment.microsecond:06d}987"[:digits]
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "")
    text += f"{sign}{hours:02d}:{minutes:02d}"
    shaped, ts_ns, has_ts = parse_stamps(pl.Series([text]))
    parsed = datetime.fromisoformat(text[:26] + text[-6:] if digits > 6 else text)
    expected = (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert shaped[0] and has_ts[0]
    assert ts_ns[0] == expected * 1000


def test_a_lower_case_t_and_z_are_read_as_their_capitals() -> None:
    # RFC 3339 section 5.6: a stamp so written takes the columnar path, with the same time
    upper = ["2026-11-24T08:15:30Z", "2026-11-24T08:15:30.25Z", "2026-11-24T09:15:30+01:00"]
    lower: list[str | None] = [text.replace("T", "t").replace("Z", "z") for text in upper]
    shaped, ts_ns, has_ts = parse_stamps(pl.Series("ts", lower, dtype=pl.String))
    want = parse_stamps(pl.Series("ts", upper, dtype=pl.String))
    assert shaped.all() and has_ts.all()
    assert ts_ns.tolist() == want[1].tolist()
    assert_read_alike(lower)
