"""Splitting event batch bodies without parsing them: the same events orjson would see."""

from __future__ import annotations

import gzip
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.bodies import BodyError, EventSpans, gunzip, is_gzip, split_events

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab"\\[]{},\n\r\t é'), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


def elements(spans: EventSpans) -> list[Any]:
    return [orjson.loads(raw) for _positions, raws in spans.chunks(3) for raw in raws]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(json_values, max_size=8),
    st.sampled_from([None, 1, 2]),
    st.booleans(),
    st.sampled_from([1, 3, 64, 1 << 20]),
)
def test_array_elements_are_what_orjson_parses(
    array: list[Any], indent: int | None, ascii_only: bool, block_bytes: int
) -> None:
    body = json.dumps(array, indent=indent, ensure_ascii=ascii_only).encode()
    # small blocks: the state carried across blocks (escapes, strings, depth) is exercised
    spans = split_events(b" \n" + body + b"\n", max_events=100, block_bytes=block_bytes)
    assert elements(spans) == orjson.loads(body)
    # each element is one line (polars reads them as JSON Lines)
    assert all(b"\n" not in raw for _positions, raws in spans.chunks(100) for raw in raws)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(json_values.map(orjson.dumps), st.sampled_from([b"", b"  ", b"\r"]))),
    st.sampled_from([1, 5, 1 << 20]),
)
def test_json_lines_are_the_non_blank_lines(lines: list[bytes], block_bytes: int) -> None:
    body = b"\n".join(lines)
    if body.lstrip().startswith(b"["):
        return  # that is an array body
    spans = split_events(body, max_events=100, block_bytes=block_bytes) if body.strip() else None
    expected = [orjson.loads(line) for line in lines if line.strip()]
    assert (elements(spans) if spans is not None else []) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64) | st.text(alphabet='[]{}",\\ \n1a', max_size=40).map(str.encode))
def test_any_body_is_split_or_refused_with_a_status(body: bytes) -> None:
    try:
        split_events(body, max_events=1000)
    except BodyError as exc:
        assert exc.status in {400, 413}


@pytest.mark.parametrize(
    ("body", "count"),
    [(b"[]", 0), (b" [ ] ", 0), (b"[1,,2]", 3), (b'[{"a":"],["}]', 1), (b"\n\n{}\n \n{}", 2)],
)
def test_edge_cases(body: bytes, count: int) -> None:
    assert len(split_events(body, max_events=10)) == count


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"", 400, "empty"),
        (b"[1, 2", 400, "not closed"),
        (b"[1] 2", 400, "follows"),
        (b"[1]]", 400, "follows"),
        (b"[1}", 400, "do not match"),
        (b"[" + b"0," * 11 + b"0]", 413, "more than 10 events"),
        (b"{}\n" * 11, 413, "more than 10 events"),
    ],
)
def test_bodies_refused_whole(body: bytes, status: int, words: str) -> None:
    with pytest.raises(BodyError) as caught:
        split_events(body, max_events=10)
    assert caught.value.status == status and words in caught.value.detail


def test_a_huge_array_is_refused_before_it_is_parsed() -> None:
    body = b"[" + b"0," * (8 << 20) + b"0]"  # the 16 MiB body of issue 9, finding 7
    with pytest.raises(BodyError) as caught:
        split_events(body, max_events=100_000)
    assert caught.value.status == 413


def test_content_encodings() -> None:
    assert gunzip(gzip.compress(b"[1]"), max_bytes=10) == b"[1]"
    assert gunzip(gzip.compress(b"[1,") + gzip.compress(b"2]"), max_bytes=10) == b"[1,2]"
    assert [is_gzip(c) for c in (None, "", "identity", "gzip", "X-Gzip", "gzip, identity")] == [
        False,
        False,
        False,
        True,
        True,
        True,
    ]
    for coding in ("br", "deflate", "gzip, gzip", "compress"):
        with pytest.raises(BodyError) as caught:
            is_gzip(coding)
        assert caught.value.status == 415
    cases = [
        (gzip.compress(b" " * 11), 413),  # a (small) bomb
        (b"not gzip", 400),
        (gzip.compress(b"[1]")[:-6], 400),
    ]
    for body, status in cases:
        with pytest.raises(BodyError) as caught:
            gunzip(body, max_bytes=10)
        assert caught.value.status == status
