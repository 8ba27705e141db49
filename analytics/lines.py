"""JSON Lines read a block at a time, each chunk of lines kept as the one ``bytes`` that holds it.

``chargewatch.events.iter_jsonl_blocks`` gives every line as a ``bytes`` of its own, which the
columnar path (``chargewatch.columns``) then joins again for polars: a Python object made and
thrown away per line, most of the cost of reading a fleet file before any parsing. Here one
NumPy scan finds the newlines of a block, and a chunk of lines is handed on as the slice of the
block that holds them, with where each line begins and how long it is: polars reads the slice
as it is, and only the lines that go the per-event way are cut out of it.

The lines are those of ``iter_jsonl_blocks``: numbered from 1, blank lines numbered but not
given out, a line longer than ``max_line_bytes`` given out cut short to ``max_line_bytes + 1``
bytes (so that its decoding fails with a clear reason) and the rest of it never held.
``tests/analytics/test_lines.py`` holds the two readers to the same lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np

from analytics.batch import IntArray
from chargewatch.events import MAX_LINE_BYTES

__all__ = ["READ_BYTES", "LineBlock", "iter_line_blocks"]

# Read 12 MB at a time: about one chunk of the file path (``CHUNK_LINES`` lines of ~250 bytes),
# so that a block is mostly given out as one chunk, not as a full one and a small remainder.
READ_BYTES = 12 << 20
_NEWLINE = ord("\n")
# The bytes ``bytes.strip`` removes: a line made only of them is blank. A line that is not
# empty and does not begin with one of them cannot be blank, so only the few that do are
# looked at one by one.
_WHITESPACE = np.frombuffer(b" \t\n\r\x0b\x0c", dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class LineBlock:
    """Lines of a file: their numbers, and ``data`` holding them joined by newlines, line ``i``
    being ``data[starts[i] : starts[i] + lengths[i]]``."""

    numbers: IntArray
    data: bytes
    starts: IntArray
    lengths: IntArray

    @classmethod
    def of(cls, numbers: Sequence[int] | IntArray, lines: Sequence[bytes]) -> LineBlock:
        """Lines given one by one (the rare chunk with blank or over-long lines)."""
        lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
        starts = np.zeros(lengths.size, dtype=np.int64)
        np.cumsum(lengths[:-1] + 1, out=starts[1:])
        return cls(np.asarray(numbers, dtype=np.int64), b"\n".join(lines), starts, lengths)

    def __len__(self) -> int:
        return int(self.numbers.size)

    def __getitem__(self, i: int) -> bytes:
        start = int(self.starts[i])
        return self.data[start : start + int(self.lengths[i])]


def iter_line_blocks(
    stream: IO[bytes],
    max_lines: int,
    *,
    read_bytes: int = READ_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[LineBlock]:
    """The non-blank lines of ``stream``, at most ``max_lines`` at a time (see the module)."""
    number = 0  # lines numbered so far
    carry = b""  # the unfinished line after the last newline read
    skipping = False  # inside an over-long line, given out cut short already
    while block := stream.read(read_bytes):
        if skipping:
            at = block.find(b"\n")
            if at < 0:
                continue
            block = block[at + 1 :]
            skipping = False
        data = carry + block if carry else block
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE)
        if ends.size:
            yield from _chunks(data, ends, number, max_lines, max_line_bytes)
            number += int(ends.size)
            carry = data[int(ends[-1]) + 1 :]
        else:
            carry = data
        if len(carry) > max_line_bytes:  # an over-long line: its head now, the rest skipped
            number += 1
            head = carry[: max_line_bytes + 1]
            if head.strip():
                yield LineBlock.of([number], [head])
            carry, skipping = b"", True
    if carry.strip():
        yield LineBlock.of([number + 1], [carry])


def _chunks(
    data: bytes, ends: IntArray, number: int, max_lines: int, max_line_bytes: int
) -> Iterator[LineBlock]:
    """The lines of ``data`` that end at ``ends`` (its newlines), numbered after ``number``,
    blank ones left out, ``max_lines`` at a time."""
    starts = np.zeros(ends.size, dtype=np.int64)
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    numbers = np.arange(number + 1, number + 1 + ends.size, dtype=np.int64)
    # starts[i] <= ends[i]: the first byte of a line, or its newline when it is empty
    first = np.frombuffer(data, dtype=np.uint8)[starts]
    maybe = np.flatnonzero(np.isin(first, _WHITESPACE)).tolist()
    blank = [i for i in maybe if not data[starts[i] : ends[i]].strip()]
    kept = np.delete(np.arange(ends.size), blank) if blank else np.arange(ends.size)
    for begin in range(0, kept.size, max_lines):
        rows = kept[begin : begin + max_lines]
        a, b = int(rows[0]), int(rows[-1])
        if b - a == rows.size - 1 and int(lengths[rows].max()) <= max_line_bytes:
            # consecutive lines, none cut short: the slice of the block that holds them
            offset = int(starts[a])
            yield LineBlock(
                numbers[rows], data[offset : int(ends[b])], starts[rows] - offset, lengths[rows]
            )
        else:
            cut = [
                data[s : s + min(n, max_line_bytes + 1)]
                for s, n in zip(starts[rows].tolist(), lengths[rows].tolist(), strict=True)
            ]
            yield LineBlock.of(numbers[rows], cut)
