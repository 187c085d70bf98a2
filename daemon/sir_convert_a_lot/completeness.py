"""Has an image or a ZIP-based document arrived whole? Each by its own structure, the way
``source_file`` asks a PDF for its ``%%EOF``.

Writers write these formats front to back and their last bytes are what says "done": a PNG ends
with its ``IEND`` chunk, a JPEG with its end-of-image marker, a ZIP with its central directory
and end record; a TIFF is whole when its chain of directories and their data lie inside the
file; BMP and WebP declare their size in their header. Legacy Office files, RTF and text have
nothing to look for: the stability window alone says they have arrived. Every look is a bounded
read; nothing is parsed beyond these fixed records.
"""

from __future__ import annotations

import os
import struct
from typing import Final

from sir_convert_a_lot import zipdir
from sir_convert_a_lot.tiff_ifds import missing_in_tiff

# Why a file's bytes look unfinished: also the ``missing`` detail of a ``truncated`` failure.
PNG_END_NOT_ARRIVED: Final = "png_end_not_arrived"
JPEG_END_NOT_ARRIVED: Final = "jpeg_end_not_arrived"
SHORTER_THAN_DECLARED: Final = "shorter_than_declared"

_IEND: Final = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk with its fixed CRC
_EOI: Final = b"\xff\xd9"
# Bytes some writers leave after the end marker (cameras pad JPEGs with zeros or 0xFF); past
# this much, data after the end (a "motion photo"'s video) is not taken for padding.
_TAIL: Final = 4096


def missing_in(fd: int, size: int, head: bytes, content: str) -> str | None:
    """Which part of a file of this content has not arrived, or None (PDFs: ``source_file``)."""
    if content == "zip":
        end = zipdir.find_end(fd, size)
        return end if isinstance(end, str) else None
    if content == "png":
        return None if _IEND in _tail(fd, size) else PNG_END_NOT_ARRIVED
    if content == "jpeg":
        return None if _ends_with_eoi(_tail(fd, size)) else JPEG_END_NOT_ARRIVED
    if content == "tiff":
        return missing_in_tiff(fd, size, head)
    if content == "bmp":
        return _shorter(size, struct.unpack("<I", head[2:6])[0])
    if content == "webp":
        return _shorter(size, 8 + struct.unpack("<I", head[4:8])[0])
    return None


def _tail(fd: int, size: int) -> bytes:
    start = max(0, size - _TAIL)
    return os.pread(fd, size - start, start)


def _ends_with_eoi(tail: bytes) -> bool:
    """The end-of-image marker ends the file, after nothing but padding."""
    stripped = tail.rstrip(b"\x00")
    while stripped.endswith(b"\xff") and not stripped.endswith(_EOI):
        stripped = stripped[:-1]
    return stripped.endswith(_EOI)


def _shorter(size: int, declared: int) -> str | None:
    """A header's declared size (0: not declared, as some BMP writers leave it)."""
    return SHORTER_THAN_DECLARED if declared and size < declared else None
