"""A dropped file looked at without a parser: is it a regular file, have all its parts arrived?

Both sides of the trust boundary need these looks, so they sit below both: the supervisor's
intake asks whether a file has finished arriving, its claim-time checks refuse links, special
files and truncated documents (``jobs.source_checks``), and the worker reads the bytes it parses
through the same regular-file open (``backends.pdf_open``). Nothing here parses a document.

``missing_part`` looks at the bytes of the format the file's name promises, when they begin like
it: an empty file or a head of zeros (a preallocated file whose data has not come) has not
arrived, whatever its format. A PDF writer writes the header first and ``%%EOF`` last, so a tail
without ``%%EOF``, or a last ``startxref`` that points past the end or into zeros, means the rest
is still on its way; the other formats have their own ends (``completeness``). Bytes of another
format than the name's have nothing to wait for: the claim-time checks refuse them at once.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from sir_convert_a_lot import sniff
from sir_convert_a_lot.completeness import missing_in
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.formats import Content, content_of_name

PDF_MAGIC = sniff.PDF_MAGIC
MAGIC_WINDOW = sniff.PDF_WINDOW
_TAIL_BYTES = 2048  # where %%EOF must lie: the last kilobyte, with slack for padding after it
_STARTXREF = re.compile(rb"startxref\s+(\d{1,20})")

# Why a file's bytes look unfinished; also the ``missing`` detail of a ``truncated`` failure.
EMPTY = "empty_file"
HEAD_NOT_ARRIVED = "head_not_arrived"
NO_EOF_MARKER = "no_eof_marker"
XREF_NOT_ARRIVED = "xref_not_arrived"

_NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


# What the checks look at: a path (tests, one-shot files) or an opener that walks a share by
# descriptor (the daemon's inbox, where a folder on the way may be swapped for a link).
Source = Path | Callable[[], int]


def open_source(source: Source) -> int:
    """A descriptor on ``source``, never through a link at its last component."""
    if isinstance(source, Path):
        return os.open(source, _NO_FOLLOW)
    return source()


def missing_part(path: Source, name: str | None = None) -> str | None:
    """Which part of the document has not arrived yet, or None when it is whole (or its bytes
    are not the format its name promises, which the claim-time checks report). ``name``: the
    file's name as dropped (a path's own name when not given; without one, the bytes alone
    decide which check applies). Never follows links; unreadable is None."""
    if name is None and isinstance(path, Path):
        name = path.name
    try:
        fd = open_source(path)
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        return _missing_in(fd, info.st_size, None if name is None else content_of_name(name))
    except OSError:
        return None
    finally:
        os.close(fd)


def _missing_in(fd: int, size: int, promised: Content | None) -> str | None:
    if size == 0:
        return EMPTY
    head = os.pread(fd, sniff.HEAD_BYTES, 0)
    if not head[:MAGIC_WINDOW].strip(b"\0"):
        return HEAD_NOT_ARRIVED
    found = sniff.content_of_head(head, promised)
    if promised is not None and not sniff.fits(promised, found):
        return None  # another format than the name's: refused at the claim, nothing to wait for
    if found != "pdf":
        return missing_in(fd, size, head, found) if found != "unknown" else None
    return _pdf_missing(fd, size)


def _pdf_missing(fd: int, size: int) -> str | None:
    tail_start = max(0, size - _TAIL_BYTES)
    tail = os.pread(fd, _TAIL_BYTES, tail_start)
    eof = tail.rfind(b"%%EOF")
    if eof < 0:
        return NO_EOF_MARKER
    offsets = _STARTXREF.findall(tail[:eof])
    if not offsets:
        return None  # hand-made files without startxref are complete; the parser rebuilds
    offset = int(offsets[-1])
    if offset >= size:
        return XREF_NOT_ARRIVED
    landing = os.pread(fd, 32, offset)
    if not landing.strip(b"\0"):
        return XREF_NOT_ARRIVED  # a hole: the writer has not filled this part yet
    return None


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words a user knows."""
    for test, name in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "folder"),
    ):
        if test(mode):
            return name
    return "special file"


def open_regular(path: Path) -> int:
    """Open a file for reading only if it is a regular file, without following a link and
    without blocking on a FIFO. Returns the descriptor."""
    try:
        fd = os.open(path, _NO_FOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise JobFailure(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                "The dropped item is a symbolic link; copy the PDF itself into the inbox.",
                reason="not_a_regular_file",
                kind="symbolic link",
            ) from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_regular(mode)
    return fd


def not_regular(mode: int, what: str = "PDF") -> JobFailure:
    kind = file_kind(mode)
    return JobFailure(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"The dropped item is a {kind}, not a regular file; copy the {what} itself into the inbox.",
        reason="not_a_regular_file",
        kind=kind,
    )


def no_pdf_header() -> JobFailure:
    return JobFailure(
        ErrorCode.PDF_UNREADABLE,
        "The file is not a PDF (no %PDF header); check that it was saved or exported as PDF.",
        reason="no_pdf_header",
    )
