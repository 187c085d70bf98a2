"""The checks a claimed file passes before any conversion, made in the supervisor: a regular file
named .pdf, within the size limit, readable by the service, whole, and starting like a PDF.

This is the trusted side of the boundary: nothing here parses the PDF. It only ``lstat``s the
file, reads its first and last bytes, and hashes a regular file it opened without following
links, so a hostile file cannot reach the daemon's process through a parser. The parsing (pages,
encryption, a page tree that loops) happens in the worker, where a hostile file can only take
the worker down (``backends.pdf_open``). The lifecycle runs these checks at each attempt, and
the endings hash the original again to record what was converted.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.names import display, has_pdf_suffix
from sir_convert_a_lot.source_file import (
    HEAD_NOT_ARRIVED,
    MAGIC_WINDOW,
    NO_EOF_MARKER,
    PDF_MAGIC,
    missing_part,
    no_pdf_header,
    not_regular,
    open_regular,
)


@dataclass(frozen=True)
class SourceFacts:
    size_bytes: int
    sha256: str | None


def inspect_source(path: Path, original_name: str, max_file_bytes: int) -> SourceFacts:
    """The checks that need no PDF parser. Raises JobFailure with the specific code."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise not_regular(info.st_mode)
    if info.st_nlink > 1:
        raise JobFailure(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "The dropped item is a hard link to a file kept elsewhere; copy the PDF itself into "
            "the inbox.",
            reason="hard_link",
            links=info.st_nlink,
        )
    if not has_pdf_suffix(original_name):
        raise JobFailure(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"Only PDF files are converted; {display(original_name)!r} does not end in .pdf.",
            reason="not_a_pdf_name",
        )
    if info.st_size == 0:
        raise JobFailure(
            ErrorCode.PDF_UNREADABLE,
            "The file is empty (0 bytes); drop it again once it has been written completely.",
            reason="empty_file",
        )
    if info.st_size > max_file_bytes:
        raise JobFailure(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"The file is {info.st_size} bytes, over this service's limit of "
            f"{max_file_bytes} bytes; split it or ask the operator to raise the limit.",
            size_bytes=info.st_size,
            max_file_bytes=max_file_bytes,
        )
    _check_readable(path, info)
    missing = missing_part(path)
    if missing is not None:
        raise _truncated(missing)
    if not _starts_like_pdf(path):
        raise no_pdf_header()
    return SourceFacts(size_bytes=info.st_size, sha256=sha256_of(path))


def _check_readable(path: Path, info: os.stat_result) -> None:
    """A file whose mode lets only its owner (another user) read it would otherwise fail deep
    inside the converter with an error about the state folder; say what the user can fix."""
    try:
        os.close(open_regular(path))
    except PermissionError:
        raise JobFailure(
            ErrorCode.PDF_UNREADABLE,
            "The conversion service is not allowed to read this file (only its owner may); "
            "make it group-readable (chmod g+r, or copy it to the share with default "
            "permissions) and drop it again.",
            reason="not_readable_by_service",
            mode=f"{stat.S_IMODE(info.st_mode):04o}",
            owner_uid=info.st_uid,
        ) from None


def _starts_like_pdf(path: Path) -> bool:
    """The cheap header check, done here too so that a non-PDF gets ``pdf_unreadable`` even
    where the GPU policy would refuse the job before any parser saw it."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        return PDF_MAGIC in handle.read(MAGIC_WINDOW)


def _truncated(missing: str) -> JobFailure:
    """The file's end (or start) never arrived. The daemon only claims such a file after it
    waited ``watch.incomplete_wait_seconds`` for the rest; ``convert`` reports it at once."""
    if missing == HEAD_NOT_ARRIVED:
        what = "it holds only zero bytes where the PDF should begin"
    elif missing == NO_EOF_MARKER:
        what = "its end never arrived (there is no %%EOF marker at its end)"
    else:
        what = "its cross-reference table never arrived (startxref points at unwritten data)"
    return JobFailure(
        ErrorCode.PDF_UNREADABLE,
        f"The PDF is incomplete: {what}; the copy was interrupted, so drop a complete copy.",
        reason="truncated",
        missing=missing,
    )


def sha256_of(path: Path) -> str | None:
    """Hash a regular file read without following links; None for anything else."""
    try:
        fd = open_regular(path)
    except (JobFailure, OSError):
        return None
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
