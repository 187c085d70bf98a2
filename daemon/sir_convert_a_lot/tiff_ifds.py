"""Has a TIFF arrived whole: is every image file directory (IFD) of its chain inside the file,
and every strip or tile each one points at?

A TIFF has no end marker. Its header points at the first IFD, each IFD at the next, and a writer
may put them before or after the pixel data they describe, so a file has arrived when the whole
chain can be walked inside it and each page's data ends inside it too. The walk reads only the
fixed-size records (the entry count, the entries, the next offset, the offset and size arrays),
each with one bounded ``pread``; it stops at a loop (a damaged file, for the worker to report)
and after ``MAX_IFDS`` pages, so a 10,000-page scan is walked in milliseconds. Classic TIFF and
BigTIFF, either byte order.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

IFD_NOT_ARRIVED: Final = "tiff_ifd_not_arrived"
DATA_NOT_ARRIVED: Final = "tiff_data_not_arrived"

MAX_IFDS: Final = 100_000
MAX_ARRAY: Final = 1 << 20  # strips or tiles of one page; more, and that page's data is not checked

_STRIPS = (273, 279)  # StripOffsets, StripByteCounts
_TILES = (324, 325)  # TileOffsets, TileByteCounts
_TYPE_CODES: Final = {3: "H", 4: "I", 13: "I", 16: "Q"}  # SHORT, LONG, IFD, LONG8


@dataclass(frozen=True)
class _Layout:
    """Classic TIFF or BigTIFF: the sizes of an IFD's count, entries and next offset."""

    order: str
    count: str  # struct code of the entry count
    offset: str  # struct code of an offset (and of the next-IFD pointer)
    entry: int  # bytes per entry
    inline: int  # bytes of an entry's value field

    def size(self, code: str) -> int:
        return struct.calcsize(self.order + code)


def _layout(head: bytes) -> tuple[_Layout, int] | None:
    """The layout and the first IFD's offset, from the header; None when it is not a TIFF."""
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 16:
        return None
    (version,) = struct.unpack(order + "H", head[2:4])
    if version == 42:
        (first,) = struct.unpack(order + "I", head[4:8])
        return _Layout(order, "H", "I", 12, 4), first
    if version == 43:
        (first,) = struct.unpack(order + "Q", head[8:16])
        return _Layout(order, "Q", "Q", 20, 8), first
    return None


def missing_in_tiff(fd: int, size: int, head: bytes) -> str | None:
    """``IFD_NOT_ARRIVED`` or ``DATA_NOT_ARRIVED`` while part of the file is still on its way;
    None when the chain and its data lie inside the file (or it is no TIFF to wait for)."""
    found = _layout(head)
    if found is None:
        return None
    layout, offset = found
    seen: set[int] = set()
    count_size, next_size = layout.size(layout.count), layout.size(layout.offset)
    while offset and len(seen) < MAX_IFDS:
        if offset in seen:
            return None  # a loop: a damaged file, not an unfinished one
        seen.add(offset)
        if offset + count_size > size:
            return IFD_NOT_ARRIVED
        (count,) = struct.unpack(layout.order + layout.count, os.pread(fd, count_size, offset))
        end = offset + count_size + count * layout.entry + next_size
        if count == 0 or end > size:
            return IFD_NOT_ARRIVED  # no entries: zeros where the writer has not written yet
        table = os.pread(fd, end - offset - count_size, offset + count_size)
        missing = _data_missing(fd, size, layout, table, count)
        if missing is not None:
            return missing
        (offset,) = struct.unpack(layout.order + layout.offset, table[-next_size:])
    return None


def _data_missing(fd: int, size: int, layout: _Layout, table: bytes, count: int) -> str | None:
    """Whether one page's strips (or tiles) end beyond the file."""
    entries: dict[int, tuple[int, int, bytes]] = {}
    head = layout.order + "HH" + layout.offset  # tag, type, number of values
    head_size = struct.calcsize(head)
    for index in range(count):
        at = index * layout.entry
        tag, kind, number = struct.unpack(head, table[at : at + head_size])
        if tag in _STRIPS + _TILES:
            entries[tag] = (kind, number, table[at + head_size : at + layout.entry])
    for offsets_tag, counts_tag in (_STRIPS, _TILES):
        if offsets_tag in entries and counts_tag in entries:
            offsets = _values(fd, size, layout, entries[offsets_tag])
            lengths = _values(fd, size, layout, entries[counts_tag])
            if offsets is None or lengths is None:
                return DATA_NOT_ARRIVED
            ends = [o + n for o, n in zip(offsets, lengths, strict=False) if n]
            if ends and max(ends) > size:
                return DATA_NOT_ARRIVED
    return None


def _values(
    fd: int, size: int, layout: _Layout, entry: tuple[int, int, bytes]
) -> tuple[int, ...] | None:
    """An entry's array of offsets or sizes; () when it is too long to check or of an odd
    type, None when the array itself lies beyond the file."""
    kind, number, field = entry
    code = _TYPE_CODES.get(kind)
    if code is None or number > MAX_ARRAY:
        return ()
    form = f"{layout.order}{number}{code}"
    length = struct.calcsize(form)
    if length <= layout.inline:
        return tuple(struct.unpack(form, field[:length]))
    (where,) = struct.unpack(layout.order + layout.offset, field)
    if where + length > size:
        return None
    return tuple(struct.unpack(form, os.pread(fd, length, where)))
