"""RFC 3339 stamps read a column at a time, for the columnar path (``chargewatch.columns``).

``parse_stamps`` checks each stamp's shape and reads its time in NumPy, from the characters at
their places: a body of a thousand stamps costs 0.3-0.5 ms, where the same in polars
expressions (``stamp_ns``: a dozen of them, each a fixed cost per call) costs 1-1.5 ms. A text
of any other shape still gets the time ``stamp_ns`` gives it (readers of a file or batch
estimate receive times from every row's stamp, the rows the columnar path leaves to the
per-event way included), so ``parse_stamps`` hands those few to ``stamp_ns``; both are tested
to agree on every text.
"""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = ["TS_SHAPE", "parse_stamps", "stamp_ns"]

# RFC 3339 as the columnar path parses it: T (or t, as section 5.6 allows), seconds, an optional
# fraction of 1 to 9 digits (Python keeps 6, and so do both readers here), Z (or z) or a +hh:mm
# offset within a day. [0-9], not \d: polars' regexes are Unicode-aware and \d matches digits of
# every script.
TS_SHAPE = (
    r"^(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_SECONDS_CHARS = 19  # 2026-11-24T08:15:30
_MAX_CHARS = _SECONDS_CHARS + 10 + 6  # with 9 fraction digits and an offset
_WIDTH = _MAX_CHARS + 1  # one more: a longer text shows in the last place


def _range(*places: str) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest byte each place admits, from ``"09"``-style pairs."""
    return (
        np.array([ord(pair[0]) for pair in places], dtype=np.uint8),
        np.array([ord(pair[-1]) for pair in places], dtype=np.uint8),
    )


# What each place of the date and time admits (the century, 19 or 20, is checked as a pair),
# and each place of an offset zone but its sign (hours 20-23 as a pair too).
_DIGIT, _SIXTY = "09", "05"
_HEAD_LOW, _HEAD_HIGH = _range(
    "12", _DIGIT, _DIGIT, _DIGIT, "-", _DIGIT, _DIGIT, "-", _DIGIT, _DIGIT, "T",
    _DIGIT, _DIGIT, ":", _SIXTY, _DIGIT, ":", _SIXTY, _DIGIT,
)  # fmt: skip
_ZONE_LOW, _ZONE_HIGH = _range("02", _DIGIT, ":", _SIXTY, _DIGIT)
# a byte minus the lowest its place admits (uint8: wraps below it) is at most this span
_HEAD_SPAN, _ZONE_SPAN = _HEAD_HIGH - _HEAD_LOW, _ZONE_HIGH - _ZONE_LOW
_FRACTION_DIGITS = 9
_MICRO_DIGITS = 6
_NINETEEN, _TWENTY = ord("1") * 256 + ord("9"), ord("2") * 256 + ord("0")
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_US = 1_000_000
_PLACES = np.arange(_FRACTION_DIGITS)
_MICRO_WEIGHTS = 10 ** np.arange(_MICRO_DIGITS - 1, -1, -1, dtype=np.int64)


def parse_stamps(ts: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a column of stamps (text, null for none): where each has ``TS_SHAPE``, its time in
    integer nanoseconds (UTC, to the microsecond; 0 where it has none), and where it has one:
    for a text of that shape, a real date and time (not February 30th, not 24:00); for others,
    whatever ``stamp_ns`` makes of it.

    Read as UTF-8 bytes: a text of that shape is ASCII, and a byte of any other character
    fails every place."""
    binary = ts.cast(pl.Binary)
    texts = binary.to_list()
    n = len(texts)
    if ts.null_count():
        texts = [b"" if text is None else text for text in texts]
    lengths = binary.bin.size().fill_null(0).to_numpy().astype(np.int64)
    # one row of bytes per place, the stamps along it (a text longer than _WIDTH is cut: it has
    # no shape anyway): each place a contiguous row, not a strided column
    chars = np.array(texts, dtype=f"S{_WIDTH}").view(np.uint8).reshape(n, _WIDTH).T.copy()
    rows = np.arange(n)
    chars[10] &= 0xDF  # t as T: the one letter of the head (no other byte becomes a T)
    shaped = (lengths > _SECONDS_CHARS) & (lengths <= _MAX_CHARS)
    head = chars[:_SECONDS_CHARS] - _HEAD_LOW[:, None]  # uint8: wraps below the lowest
    shaped &= (head <= _HEAD_SPAN[:, None]).all(axis=0)
    century = chars[0].astype(np.int64) * 256 + chars[1]
    shaped &= (century == _NINETEEN) | (century == _TWENTY)
    # the zone: Z, or +hh:mm / -hh:mm in the last six places
    zulu = (chars[np.clip(lengths - 1, 0, _WIDTH - 1), rows] | 0x20) == ord("z")  # Z or z
    zone_at = np.clip(lengths - 6, 0, _WIDTH - 6)
    sign = chars[zone_at, rows]
    hhmm = [chars[zone_at + 1 + place, rows] for place in range(5)]
    offset_ok = (sign == ord("+")) | (sign == ord("-"))
    for place, char in enumerate(hhmm):
        offset_ok &= (char - _ZONE_LOW[place]) <= _ZONE_SPAN[place]
    offset_ok &= (hhmm[0] != ord("2")) | (hhmm[1] <= ord("3"))
    shaped &= zulu | offset_ok
    # between the seconds and the zone: nothing, or a dot and 1 to 9 digits
    fraction = lengths - _SECONDS_CHARS - np.where(zulu, 1, 6)
    digits = fraction - 1
    first = _SECONDS_CHARS + 1
    fraction_ok = (digits >= 1) & (digits <= _FRACTION_DIGITS)
    fraction_ok &= chars[_SECONDS_CHARS] == ord(".")
    digit = chars[first : first + _FRACTION_DIGITS] - np.uint8(ord("0"))  # uint8: wraps
    used = _PLACES[:, None] < digits
    fraction_ok &= (~used | (digit <= 9)).all(axis=0)
    # Python keeps six digits, and so do both readers
    micros = _MICRO_WEIGHTS @ np.where(used[:_MICRO_DIGITS], digit[:_MICRO_DIGITS], 0)
    shaped &= (fraction == 0) | fraction_ok

    def number(*places: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int64)
        for place in places:
            out = out * 10 + chars[place] - ord("0")
        return out

    year, month, day = number(0, 1, 2, 3), number(5, 6), number(8, 9)
    hour, minute, second = number(11, 12), number(14, 15), number(17, 18)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _MONTH_DAYS[np.clip(month, 0, 12)] + ((month == 2) & leap)
    has_ts = shaped & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days) & (hour < 24)
    hh = (hhmm[0].astype(np.int64) - ord("0")) * 10 + hhmm[1] - ord("0")
    offset = hh * 60 + (hhmm[3].astype(np.int64) - ord("0")) * 10 + hhmm[4] - ord("0")
    offset_min = np.where(zulu, 0, np.where(sign == ord("-"), -offset, offset))
    seconds = ((_days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second
    ts_ns = np.where(has_ts, (seconds * _US + micros - offset_min * 60 * _US) * 1000, 0)
    odd = np.flatnonzero(~shaped)
    if odd.size:  # rare: texts of other shapes get the time stamp_ns gives them
        other = ts.gather(odd).to_frame("ts").select(stamp_ns(pl.col("ts"))).to_series()
        ts_ns[odd] = other.fill_null(0).to_numpy()
        has_ts[odd] = other.is_not_null().to_numpy()
    return shaped, ts_ns.astype(np.int64), has_ts


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's ``days_from_civil``)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return np.asarray(era * 146_097 + day_of_era - 719_468, dtype=np.int64)


def stamp_ns(ts: pl.Expr) -> pl.Expr:
    """Integer nanoseconds (UTC, to the microsecond, as the per-event path keeps) of stamps of
    ``TS_SHAPE`` (others give any value: they are not ``ok``): the date and time to the
    second by polars' fixed-width parser, then the fraction's first six digits and the zone
    from their places (the zone is ``Z`` or six characters at the end; ``t`` and ``z`` read
    as ``T`` and ``Z``)."""
    ts = ts.str.to_uppercase()
    zulu = ts.str.ends_with("Z")
    zone = pl.when(zulu).then(1).otherwise(6)
    seconds = (
        ts.str.slice(0, 19)
        .str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S", strict=False, cache=False)
        .cast(pl.Int64)
    )
    # the fraction's digits: between the dot (after the seconds) and the zone; "" without one
    digits = ts.str.slice(20, pl.max_horizontal(ts.str.len_bytes().cast(pl.Int64) - 20 - zone, 0))
    micros = digits.str.slice(0, 6).str.pad_end(6, "0").cast(pl.Int64, strict=False)
    hours = ts.str.slice(-5, 2).cast(pl.Int64, strict=False)
    minutes = ts.str.slice(-2, 2).cast(pl.Int64, strict=False)
    sign = pl.when(ts.str.slice(-6, 1) == "-").then(-1).otherwise(1)
    offset_min = pl.when(zulu).then(0).otherwise(sign * (hours * 60 + minutes))
    return (seconds + micros - offset_min * 60_000_000) * 1000
