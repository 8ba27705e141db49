"""How spool records lie in a segment file, and how they are read back through damage.

A record is a 20-byte header and a payload::

    magic  b"\\xffCW1"   0xFF never occurs in UTF-8, so never inside a payload: a resync point
    u32    payload bytes
    u32    lines
    u32    CRC-32 of the payload
    u32    CRC-32 of the 16 header bytes before it (a damaged length is never trusted)

little-endian, followed by the payload: line protocol, each line ending in a newline.

Segments written before this format hold ``B <payload bytes> <lines> <crc32 hex>\\n`` headers (no
magic, no header checksum); they are still read, and one segment may hold both kinds.

``scan`` walks a segment and yields, in file order, each intact ``Record``, each ``Damage`` (the
bytes from a record that fails its checks up to the next intact record, or the end) and at most one
``Tail`` (bytes at the very end that are the beginning of a record cut short, as a crash in the
middle of an append leaves them). Nothing is read past the end it is given, whatever a damaged
length claims.
"""

from __future__ import annotations

import mmap
import re
import struct
import zlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass

MAGIC = b"\xffCW1"
HEADER = struct.Struct("<4sIIII")
MAX_PAYLOAD_BYTES = (1 << 32) - 1
_LEGACY_START = b"\nB "
_LEGACY_HEADER = re.compile(rb"B (\d{1,20}) (\d{1,20}) ([0-9a-f]{8})\n")
_LEGACY_HEADER_MAX = 64
_LEGACY_PREFIX = re.compile(rb"B( \d{0,20}( \d{0,20}( [0-9a-f]{0,8})?)?)?")


@dataclass(frozen=True, slots=True)
class Record:
    """An intact record at ``[start, end)`` of its segment: its payload (line protocol, each
    line ending in a newline) and how many lines that is."""

    start: int
    end: int
    payload: bytes
    count: int

    @property
    def payload_bytes(self) -> int:
        return len(self.payload)

    @property
    def lines(self) -> list[str]:
        """The lines, without their newlines (decoded here: a drainer that sends the payload
        as it is never splits it)."""
        return self.payload.decode("utf-8").split("\n")[:-1] if self.count else []


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes at ``[start, end)`` that are no intact record (normally one record with a flipped
    byte). ``lines`` and ``payload_bytes`` are what its header claims when the header itself is
    intact (only the payload is damaged), else None."""

    start: int
    end: int
    lines: int | None
    payload_bytes: int | None


@dataclass(frozen=True, slots=True)
class Tail:
    """Bytes at ``[start, end)``, the end of the scanned range, that begin a record but stop short
    of its declared end, with no intact record after them: what a crash mid-append leaves."""

    start: int
    end: int


def encode(lines: Sequence[str]) -> tuple[bytes, int]:
    """The record holding ``lines``, and its payload's size in bytes."""
    return encode_payload(("\n".join(lines) + "\n").encode("utf-8"), len(lines))


def encode_payload(payload: bytes, count: int) -> tuple[bytes, int]:
    """The record holding ``payload``: ``count`` lines of UTF-8, each ending in a newline (the
    caller's word: ``scan`` refuses a record whose newlines are not ``count``)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"a spool record holds at most {MAX_PAYLOAD_BYTES} bytes")
    checked = struct.pack("<III", len(payload), count, zlib.crc32(payload))
    return MAGIC + checked + struct.pack("<I", zlib.crc32(checked)) + payload, len(payload)


def scan(
    buf: bytes | mmap.mmap, start: int, end: int
) -> Generator[Record | Damage | Tail, None, None]:
    """Every record, damaged stretch and torn tail of ``buf[start:end]``, in order.

    A generator over ``buf``: close it (``contextlib.closing``) before closing an mmap it scans.
    """
    with memoryview(buf) as view:
        pos = start
        while pos < end:
            found = _decode(view, pos, end)
            if isinstance(found, Record):
                yield found
                pos = found.end
                continue
            after = _resync(buf, view, pos + 1, end)
            if after == end and found is _CUT_SHORT:
                yield Tail(pos, end)
                return
            header = _header(view, pos, end)  # intact when only the payload is damaged
            if header is None:
                yield Damage(pos, after, None, None)
            else:
                size, count, _crc = header
                yield Damage(pos, after, count, size)
            pos = after


class _CutShort:
    """What ``_decode`` returns for the beginning of a record that stops before its end."""


_CUT_SHORT = _CutShort()


def _decode(view: memoryview, pos: int, end: int) -> Record | _CutShort | None:
    """The intact record at ``pos``; else ``_CUT_SHORT`` if the bytes from ``pos`` to ``end``
    could be a record cut short, else None."""
    if view[pos] == MAGIC[0]:
        return _decode_current(view, pos, end)
    if view[pos] == _LEGACY_START[1]:
        return _decode_legacy(view, pos, end)
    return None


def _header(view: memoryview, pos: int, end: int) -> tuple[int, int, int] | None:
    """Payload bytes, lines and payload CRC of the header at ``pos``, if it is whole and intact."""
    if end - pos < HEADER.size:
        return None
    magic, size, count, crc, header_crc = HEADER.unpack_from(view, pos)
    if magic != MAGIC or zlib.crc32(view[pos + 4 : pos + HEADER.size - 4]) != header_crc:
        return None
    return size, count, crc


def _decode_current(view: memoryview, pos: int, end: int) -> Record | _CutShort | None:
    if end - pos < HEADER.size:
        return _CUT_SHORT if MAGIC.startswith(bytes(view[pos : min(end, pos + 4)])) else None
    header = _header(view, pos, end)
    if header is None:
        return None
    size, count, crc = header
    payload_start = pos + HEADER.size
    if size > end - payload_start:
        return _CUT_SHORT
    return _record(view, pos, payload_start, size, count, crc)


def _decode_legacy(view: memoryview, pos: int, end: int) -> Record | _CutShort | None:
    head = bytes(view[pos : min(end, pos + _LEGACY_HEADER_MAX)])
    match = _LEGACY_HEADER.match(head)
    if match is None:
        prefix = _LEGACY_PREFIX.fullmatch(head)
        return _CUT_SHORT if prefix is not None and pos + len(head) == end else None
    size, count = int(match[1]), int(match[2])
    payload_start = pos + match.end()
    if size > end - payload_start:
        return _CUT_SHORT
    return _record(view, pos, payload_start, size, count, int(match[3], 16))


def _record(
    view: memoryview, pos: int, payload_start: int, size: int, count: int, crc: int
) -> Record | None:
    view_of_payload = view[payload_start : payload_start + size]
    if zlib.crc32(view_of_payload) != crc:
        return None
    payload = bytes(view_of_payload)
    # Counted, not split: a drainer sends the payload as it is (5,000 lines split and joined
    # again cost ~3 ms of the serving process's interpreter per batch).
    # (a record of no lines, which no spool appends, is a lone newline)
    if not payload.endswith(b"\n") or payload.count(b"\n") != max(count, 1):
        return None
    try:
        payload.decode("utf-8")  # a record of text, as every writer makes it
    except UnicodeDecodeError:
        return None
    return Record(pos, payload_start + size, payload, count)


def _resync(buf: bytes | mmap.mmap, view: memoryview, pos: int, end: int) -> int:
    """Where the next intact record at or after ``pos`` starts (``end`` if none does)."""
    magic = buf.find(MAGIC, pos, end)
    legacy = buf.find(_LEGACY_START, pos - 1, end)  # a legacy header follows a newline
    while magic >= 0 or legacy >= 0:
        if legacy < 0 or 0 <= magic <= legacy:
            candidate, magic = magic, buf.find(MAGIC, magic + 1, end)
        else:
            candidate, legacy = legacy + 1, buf.find(_LEGACY_START, legacy + 1, end)
        if isinstance(_decode(view, candidate, end), Record):
            return candidate
    return end
