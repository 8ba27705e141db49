"""The block reader of the file path gives the lines ``iter_jsonl_blocks`` gives."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.lines import iter_line_blocks
from chargewatch.events import iter_jsonl_blocks

# Lines of every kind the reader must number alike: JSON, blank ones, whitespace only, a
# carriage return, and lines around the over-long limit (10 bytes here).
_PIECES = st.sampled_from(
    [b'{"a":1}', b"", b"   ", b"\t\r", b"\r", b" {}", b"x" * 10, b"y" * 11, b"z" * 40, b"\xff"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_PIECES, max_size=40),
    st.booleans(),
    st.integers(1, 64),
    st.integers(1, 7),
)
def test_the_same_numbered_lines_as_iter_jsonl_blocks(
    pieces: list[bytes], final_newline: bool, read_bytes: int, max_lines: int
) -> None:
    data = b"\n".join(pieces) + (b"\n" if final_newline else b"")
    expected = [
        pair
        for numbers, lines in iter_jsonl_blocks(
            io.BytesIO(data), max_lines, block_bytes=read_bytes, max_line_bytes=10
        )
        for pair in zip(numbers, lines, strict=True)
    ]
    got: list[tuple[int, bytes]] = []
    for block in iter_line_blocks(
        io.BytesIO(data), max_lines, read_bytes=read_bytes, max_line_bytes=10
    ):
        assert 0 < len(block) <= max_lines
        got.extend((int(block.numbers[i]), block[i]) for i in range(len(block)))
        # the block's data is its lines joined by newlines, as polars is to read them
        assert block.data == b"\n".join(block[i] for i in range(len(block)))
    assert got == expected
