"""A ZIP file's table of contents, read by hand within fixed bounds, never decompressed.

Office documents, OpenDocument files and EPUBs are ZIP archives. The supervisor must tell
whether one has arrived whole (a ZIP writer writes its central directory and the end record
last), what it holds (a Word document, a spreadsheet, an e-book) and how large it says it
unpacks to (a ZIP bomb is refused before the worker opens it), without a parser on the trusted
side. ``zipfile`` would do all three, but it trusts the archive's numbers; here every read is a
bounded ``pread`` of a record whose size is fixed, the entries are capped, and nothing is
inflated. Only what the archive declares is read; the worker checks the truth while it unpacks.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

LOCAL_MAGIC: Final = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_END = b"PK\x05\x06"
_END64 = b"PK\x06\x06"
_LOCATOR64 = b"PK\x06\x07"
_END_SIZE = 22
_LOCATOR64_SIZE = 20
_END64_SIZE = 56
_ENTRY_SIZE = 46
_LOCAL_SIZE = 30
_COMMENT_MAX = 0xFFFF
_ENDS_TRIED = 16  # end-record candidates looked at in the tail, last first
_FULL32 = 0xFFFFFFFF

MAX_ENTRIES: Final = 100_000  # an office document has hundreds; more is refused, not listed
MAX_DIRECTORY_BYTES: Final = 32 * 1024 * 1024
_MIMETYPE_MAX = 200

# Why a ZIP has not arrived whole: also the ``missing`` detail of a ``truncated`` failure.
NO_END = "zip_end_not_arrived"
DIRECTORY_NOT_ARRIVED = "zip_directory_not_arrived"


@dataclass(frozen=True)
class End:
    """Where the central directory lies, as the end record (or its ZIP64 twin) declares."""

    entries: int
    offset: int
    size: int


@dataclass(frozen=True)
class Directory:
    """What the central directory declares. ``over_limit``: more entries than ``MAX_ENTRIES``
    (or a directory over ``MAX_DIRECTORY_BYTES``); then ``names`` and ``unpacked_bytes`` cover
    only what was read."""

    names: tuple[str, ...]
    unpacked_bytes: int
    entries: int
    over_limit: bool = False


def find_end(fd: int, size: int) -> End | str:
    """The end record of a ZIP whose tail has arrived, or why it is not there yet
    (``NO_END``, ``DIRECTORY_NOT_ARRIVED``). Consistent means: the directory it points at lies
    inside the file, before the end record, and starts with a directory entry's signature."""
    if size < _END_SIZE:
        return NO_END
    start = max(0, size - _END_SIZE - _COMMENT_MAX)
    tail = os.pread(fd, size - start, start)
    found = NO_END
    at = len(tail)
    for _ in range(_ENDS_TRIED):
        at = tail.rfind(_END, 0, at)
        if at < 0:
            break
        end = _end_at(fd, tail, at, start + at)
        if isinstance(end, End):
            return end
        found = DIRECTORY_NOT_ARRIVED
    return found


def _end_at(fd: int, tail: bytes, at: int, position: int) -> End | None:
    record = tail[at : at + _END_SIZE]
    if len(record) < _END_SIZE:
        return None
    entries, size, offset, comment = struct.unpack("<10xHIIH", record)
    if at + _END_SIZE + comment > len(tail):
        return None  # the comment has not arrived
    limit = position
    if _FULL32 in (size, offset) or entries == 0xFFFF:
        end64 = _zip64_end(fd, position)
        if end64 is None:
            return None
        end, limit = end64
    else:
        end = End(entries, offset, size)
    if end.offset + end.size > limit:
        return None
    if end.entries and os.pread(fd, 4, end.offset) != _CENTRAL:
        return None
    return end


def _zip64_end(fd: int, position: int) -> tuple[End, int] | None:
    """The ZIP64 end record that the locator just before ``position`` points at, with its own
    position (the directory must end before it)."""
    if position < _LOCATOR64_SIZE:
        return None
    locator = os.pread(fd, _LOCATOR64_SIZE, position - _LOCATOR64_SIZE)
    if locator[:4] != _LOCATOR64:
        return None
    (where,) = struct.unpack("<8xQ4x", locator)
    if where + _END64_SIZE > position - _LOCATOR64_SIZE:
        return None
    record = os.pread(fd, _END64_SIZE, where)
    if record[:4] != _END64:
        return None
    entries, size, offset = struct.unpack("<32xQQQ", record)
    return End(entries, offset, size), where


def read_directory(fd: int, end: End) -> Directory:
    """The names and declared unpacked sizes of the entries, up to ``MAX_ENTRIES``."""
    size = min(end.size, MAX_DIRECTORY_BYTES)
    data = os.pread(fd, size, end.offset)
    names: list[str] = []
    unpacked = 0
    at = 0
    while len(names) < min(end.entries, MAX_ENTRIES) and at + _ENTRY_SIZE <= len(data):
        if data[at : at + 4] != _CENTRAL:
            break
        flags, usize, name_len, extra_len, comment_len = struct.unpack(
            "<8xH14xIHHH12x", data[at : at + _ENTRY_SIZE]
        )
        name_at = at + _ENTRY_SIZE
        raw_name = data[name_at : name_at + name_len]
        extra = data[name_at + name_len : name_at + name_len + extra_len]
        if usize == _FULL32:
            usize = _zip64_size(extra)
        names.append(raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace"))
        unpacked += usize
        at = name_at + name_len + extra_len + comment_len
    over = end.entries > MAX_ENTRIES or end.size > MAX_DIRECTORY_BYTES
    return Directory(tuple(names), unpacked, end.entries, over)


def _zip64_size(extra: bytes) -> int:
    """The real unpacked size from an entry's ZIP64 extra field (the first value in it);
    without one, the 32-bit marker stands (4 GiB: over any limit)."""
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, at)
        if tag == 1 and length >= 8:
            (value,) = struct.unpack_from("<Q", extra, at + 4)
            return int(value)
        at += 4 + length
    return _FULL32


def first_stored_text(fd: int, name: str) -> str | None:
    """The content of the archive's first entry when it is ``name``, stored uncompressed and
    short: how OpenDocument and EPUB say what they are (their ``mimetype``)."""
    header = os.pread(fd, _LOCAL_SIZE, 0)
    if len(header) < _LOCAL_SIZE or header[:4] != LOCAL_MAGIC:
        return None
    method, csize, name_len, extra_len = struct.unpack("<8xH8xI4xHH", header)
    if method != 0 or csize > _MIMETYPE_MAX or name_len != len(name.encode()):
        return None
    rest = os.pread(fd, name_len + extra_len + csize, _LOCAL_SIZE)
    if rest[:name_len] != name.encode():
        return None
    return rest[name_len + extra_len :].decode("ascii", errors="replace").strip()
