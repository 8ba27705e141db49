"""Event batch bodies: decoding ``Content-Encoding`` and finding each event, without parsing.

A body is split into its events before any of them is parsed, so that a request is counted
(and refused when it holds too many) before it costs memory, and so that its events can be
encoded a chunk at a time, in bounded memory, by the same columnar path as JSON Lines files.
Parsing a whole 16 MiB JSON array at once would hold the interpreter for seconds and take
hundreds of MB for hostile shapes (``[[],[],...]``: 3.9 s, 470 MB).

The top-level elements of a JSON array are found with vectorized NumPy passes over 1 MiB
blocks (escapes, strings, nesting depth, commas at depth 1): a malformed element is one rejected
event, as a bad line of JSON Lines is; only a body whose array never closes is refused whole.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BodyError", "EventSpans", "gunzip", "is_gzip", "split_events"]

_BLOCK_BYTES = 1 << 20
_LEADING_SPACE = re.compile(rb"[ \t\r\n]*")
_QUOTE, _BACKSLASH, _COMMA, _LF, _CR, _SPACE = 0x22, 0x5C, 0x2C, 0x0A, 0x0D, 0x20
_NEWLINE = 0x0A
_OPEN_ARRAY, _CLOSE_ARRAY, _OPEN_OBJECT, _CLOSE_OBJECT = 0x5B, 0x5D, 0x7B, 0x7D
_ALWAYS_MARKED = (_QUOTE, _COMMA, _OPEN_ARRAY, _CLOSE_ARRAY, _OPEN_OBJECT, _CLOSE_OBJECT)
_SOMETIMES_MARKED = ((_BACKSLASH, b"\\"), (_LF, b"\n"), (_CR, b"\r"))
_Offsets = npt.NDArray[np.int64]


class BodyError(Exception):
    """The body cannot be taken as a whole: ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(status, detail)  # both in args: it crosses process boundaries pickled

    def __str__(self) -> str:
        return self.detail


def is_gzip(content_encoding: str | None) -> bool:
    """Whether a body with this ``Content-Encoding`` is gzip (else it is plain); any other
    coding is a 415, so that it is refused before the body is read."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return False
    if codings not in (["gzip"], ["x-gzip"]):
        raise BodyError(
            415, f"Content-Encoding {(content_encoding or '')[:40]!r} is not supported; use gzip"
        )
    return True


def gunzip(data: bytes, *, max_bytes: int) -> bytes:
    """A gzip body decompressed, up to ``max_bytes`` (413 beyond: a bomb stops there)."""
    parts: list[bytes] = []
    size = 0
    while data:  # a gzip file may hold several members, one after the other
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(data, max_bytes + 1 - size)
        except zlib.error:
            raise BodyError(400, "the body is not valid gzip") from None
        size += len(part)
        if size > max_bytes:
            raise BodyError(413, f"the body is larger than {max_bytes} bytes once decompressed")
        if not inflater.eof:
            raise BodyError(400, "the gzip body is cut short")
        parts.append(part)
        data = inflater.unused_data
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class EventSpans:
    """Where each event of a body lies: ``body[starts[i]:ends[i]]`` is event ``i``."""

    body: bytes
    starts: _Offsets
    ends: _Offsets

    def __len__(self) -> int:
        return len(self.starts)

    def chunks(self, size: int) -> Iterator[tuple[range, list[bytes]]]:
        """The events' positions (0-based) and raw JSON, ``size`` at a time (no pair per event
        to build and take apart again)."""
        body, starts, ends = self.body, self.starts.tolist(), self.ends.tolist()
        for first in range(0, len(starts), size):
            last = min(first + size, len(starts))
            yield (
                range(first, last),
                list(map(body.__getitem__, map(slice, starts[first:last], ends[first:last]))),
            )


def split_events(body: bytes, *, max_events: int, block_bytes: int = _BLOCK_BYTES) -> EventSpans:
    """The events of a JSON array or of JSON Lines (blank lines skipped); ``BodyError`` 400
    for an empty body or an array that never closes, 413 past ``max_events``. The body is
    scanned ``block_bytes`` at a time."""
    first = _LEADING_SPACE.match(body)
    start = first.end() if first is not None else 0
    if start == len(body):
        raise BodyError(400, "the body is empty")
    if body[start] == ord("["):
        return _array_elements(body, start, max_events, block_bytes)
    return _lines(body, max_events, block_bytes)


def _too_many(max_events: int) -> BodyError:
    return BodyError(413, f"more than {max_events} events in one request; send smaller batches")


def _lines(body: bytes, max_events: int, block_bytes: int) -> EventSpans:
    """The non-blank lines (``bytes.strip`` leaves something), found a block at a time."""
    starts: list[_Offsets] = []
    ends: list[_Offsets] = []
    count = 0
    # The line running into the next block: where it starts, whether it has anything but
    # white space so far.
    line_start, solid_before = 0, False
    for at in range(0, len(body), block_bytes):
        block = np.frombuffer(body, np.uint8, min(block_bytes, len(body) - at), at)
        newlines = np.flatnonzero(block == _NEWLINE)
        pieces = np.concatenate(([0], newlines + 1))  # each line's part in this block
        if pieces[-1] == len(block):
            pieces = pieces[:-1]
        solid = np.logical_or.reduceat(_solid(block), pieces)
        if newlines.size:
            kept = solid[: len(newlines)].copy()
            kept[0] |= solid_before
            line_starts = np.concatenate(([line_start], newlines[:-1] + at + 1))
            starts.append(line_starts[kept])
            ends.append(newlines[kept] + at)
            count += int(kept.sum())
            if count > max_events:
                raise _too_many(max_events)
            line_start = at + int(newlines[-1]) + 1
            solid_before = len(pieces) > len(newlines) and bool(solid[-1])
        else:
            solid_before |= bool(solid[0])
    if solid_before:
        starts.append(np.array([line_start], np.int64))
        ends.append(np.array([len(body)], np.int64))
        if count + 1 > max_events:
            raise _too_many(max_events)
    return EventSpans(body, _joined(starts), _joined(ends))


def _solid(block: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Bytes that ``bytes.strip`` keeps."""
    space = block == 0x20
    for byte in (0x09, 0x0A, 0x0B, 0x0C, 0x0D):
        space |= block == byte
    solid: npt.NDArray[np.bool_] = ~space
    return solid


def _joined(parts: list[_Offsets]) -> _Offsets:
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


@dataclass(slots=True)
class _ScanState:
    """What one block of an array hands the next."""

    escaped: bool = False  # the block's first byte follows an odd run of backslashes
    in_string: bool = False
    depth: int = 0


def _array_elements(body: bytes, start: int, max_events: int, block_bytes: int) -> EventSpans:
    """Only the bytes that matter to the structure are looked at (quotes, backslashes,
    brackets, commas, line breaks): a fifth of a body of readings."""
    state = _ScanState()
    separators: list[_Offsets] = []
    breaks: list[_Offsets] = []
    count, close = 0, -1
    for at in range(start, len(body), block_bytes):
        block, where, has_breaks = _marks(body, at, min(at + block_bytes, len(body)))
        if not where.size:
            state.escaped = False  # the block's first byte took any escape begun before
            continue
        what = block[where]
        outside = _outside_strings(where, what, len(block), state)
        opens = ((what == _OPEN_ARRAY) | (what == _OPEN_OBJECT)) & outside
        closes = ((what == _CLOSE_ARRAY) | (what == _CLOSE_OBJECT)) & outside
        depth = np.cumsum(opens.view(np.int8) - closes.view(np.int8), dtype=np.int64)
        depth += state.depth
        if depth.min() <= 0:
            ended = int(np.argmax(depth <= 0))
            if depth[ended] < 0 or what[ended] != _CLOSE_ARRAY:
                raise BodyError(400, "the body is not valid JSON (brackets do not match)")
            close = at + int(where[ended])
            if body[close + 1 :].strip():
                raise BodyError(400, "the body is not valid JSON (something follows the array)")
            where, what, outside, depth = (
                where[:ended],
                what[:ended],
                outside[:ended],
                depth[:ended],
            )
        commas = where[(what == _COMMA) & outside & (depth == 1)] + at
        separators.append(commas)
        count += len(commas)
        if count + 1 > max_events:
            raise _too_many(max_events)
        if has_breaks:
            breaks.append(where[((what == _LF) | (what == _CR)) & outside] + at)
        if close >= 0:
            break
        state.depth = int(depth[-1])
    if close < 0:
        raise BodyError(400, "the body is not valid JSON (the array is not closed)")
    cuts = _joined(separators)
    starts = np.concatenate(([start + 1], cuts + 1))
    ends = np.concatenate((cuts, [close]))
    line_breaks = _joined(breaks)
    if line_breaks.size:  # they become spaces, so that each event is one line for polars
        rewritten = np.frombuffer(bytearray(body), np.uint8)
        rewritten[line_breaks] = _SPACE
        body = rewritten.tobytes()
    if len(starts) == 1 and not body[start + 1 : close].strip():
        starts, ends = starts[:0], ends[:0]  # [] holds no event
    return EventSpans(body, starts.astype(np.int64), ends.astype(np.int64))


def _marks(body: bytes, at: int, end: int) -> tuple[npt.NDArray[np.uint8], _Offsets, bool]:
    """The block ``body[at:end]``, where in it the bytes that matter to the structure lie, and
    whether line breaks are among them. Backslashes and line breaks are absent from most
    bodies: ``bytes.find`` says so at C speed, and a byte absent needs no pass over the block."""
    block = np.frombuffer(body, np.uint8, end - at, at)
    present = [byte for byte, text in _SOMETIMES_MARKED if body.find(text, at, end) >= 0]
    marked = block == _ALWAYS_MARKED[0]
    for byte in (*_ALWAYS_MARKED[1:], *present):
        marked |= block == byte
    return block, np.flatnonzero(marked), _LF in present or _CR in present


def _outside_strings(
    where: _Offsets, what: npt.NDArray[np.uint8], size: int, state: _ScanState
) -> npt.NDArray[np.bool_]:
    """Which of the marked bytes (at ``where`` in a block of ``size``, values ``what``) lie
    outside JSON strings, quotes counting as inside; updates ``state`` for the next block."""
    backslash = what == _BACKSLASH
    escaped = np.zeros(len(what), np.bool_)
    if state.escaped and where[0] == 0:
        escaped[0] = True
        backslash[0] = False  # consumed by the escape begun in the previous block
    carried = False
    at = np.flatnonzero(backslash)  # the backslashes among the marks: few, in most bodies
    if at.size:
        # A byte is escaped when an odd run of backslashes ends right before it. Backslashes
        # next to each other in the body are next to each other among the marks too.
        follows = np.concatenate(([False], np.diff(where[at]) == 1))  # continues a run
        index = np.arange(at.size, dtype=np.int64)
        run_start = np.maximum.accumulate(np.where(follows, -1, index))
        odd = at[(index - run_start) & 1 == 0]  # run length so far odd: escapes what follows
        nxt = odd + 1
        if nxt.size and nxt[-1] == len(what):  # the last mark, escaping the next block's first
            carried = int(where[-1]) == size - 1
            nxt = nxt[:-1]
            odd = odd[:-1]
        escaped[nxt[where[nxt] == where[odd] + 1]] = True
    state.escaped = carried
    quotes = (what == _QUOTE) & ~escaped
    # inside a string after an odd number of quotes: their running parity (an XOR scan of
    # bytes runs ten times faster than a cumulative sum of booleans into int64)
    parity = np.bitwise_xor.accumulate(quotes.view(np.uint8)).view(np.bool_)
    inside = parity ^ state.in_string
    state.in_string = bool(inside[-1])
    outside: npt.NDArray[np.bool_] = ~inside & ~quotes
    return outside
