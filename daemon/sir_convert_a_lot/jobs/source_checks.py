"""The checks a claimed file passes before any conversion, made in the supervisor: a regular file
named as a format its folder accepts (and its backend reads), within the size limit, readable by
the service, whole, and holding what its name says (``format_checks``).

This is the trusted side of the boundary: nothing here parses the document. It only ``lstat``s
the file, reads its first and last bytes (and a ZIP's table of contents, bounded, never
inflated), and hashes a regular file it opened without following links, so a hostile file cannot
reach the daemon's process through a parser. The parsing (pages, encryption, a page tree that
loops) happens in the worker, where a hostile file can only take the worker down
(``backends.pdf_open``). The lifecycle runs these checks at each attempt, and the endings hash
the original again to record what was converted. A PDF gets the very codes and sentences it got
before other formats were accepted (``pdf_unreadable``); the others get ``document_unreadable``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sir_convert_a_lot import sniff
from sir_convert_a_lot.completeness import missing_in
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.formats import DocumentFormat, content_of_name, format_of_name
from sir_convert_a_lot.jobs import format_checks
from sir_convert_a_lot.options import ConversionOptions
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

_DEFAULTS = ConversionOptions()


@dataclass(frozen=True)
class SourceFacts:
    size_bytes: int
    sha256: str | None


def inspect_source(
    path: Path, original_name: str, max_file_bytes: int, options: ConversionOptions = _DEFAULTS
) -> SourceFacts:
    """The checks that need no parser, for a file dropped as ``original_name`` and converted
    with ``options`` (its accepted formats and backend). Raises JobFailure with the code."""
    info = os.lstat(path)
    named = format_of_name(original_name)
    what = "PDF" if named is None or named.name == "pdf" else "document"
    if not stat.S_ISREG(info.st_mode):
        raise not_regular(info.st_mode, what)
    if info.st_nlink > 1:
        raise JobFailure(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"The dropped item is a hard link to a file kept elsewhere; copy the {what} itself "
            "into the inbox.",
            reason="hard_link",
            links=info.st_nlink,
        )
    named = format_checks.accepted_format(original_name, options.accepted_formats, options.backend)
    unreadable = ErrorCode.PDF_UNREADABLE if named.name == "pdf" else ErrorCode.DOCUMENT_UNREADABLE
    if info.st_size == 0:
        raise JobFailure(
            unreadable,
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
    _check_readable(path, info, unreadable)
    missing = missing_part(path, original_name)
    if missing is not None:
        raise (
            _truncated(missing) if named.name == "pdf" else format_checks.truncated(named, missing)
        )
    _check_content(path, original_name, named, max_file_bytes, options)
    return SourceFacts(size_bytes=info.st_size, sha256=sha256_of(path))


def _check_content(
    path: Path,
    original_name: str,
    named: DocumentFormat,
    max_file_bytes: int,
    options: ConversionOptions,
) -> None:
    """The bytes are what the name says. A PDF without its header keeps its old answer
    (``no_pdf_header``) unless the bytes are a whole file of another format, which is named."""
    if named.name == "pdf" and _starts_like_pdf(path):
        return
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        identity = sniff.identify(fd, size, content_of_name(original_name))
        if named.name == "pdf" and not _whole_other_format(fd, size, identity):
            raise no_pdf_header()
    finally:
        os.close(fd)
    # Sizes first: a directory too long to list whole cannot say which document it holds.
    format_checks.check_unpacked(identity, named, max_file_bytes)
    format_checks.check_content(identity, original_name, named, options.accepted_formats)


def _whole_other_format(fd: int, size: int, identity: sniff.Identity) -> bool:
    """Bytes that are, beyond doubt, a whole file of another format than PDF."""
    if identity.content in ("text", "unknown", "pdf"):
        return False
    if identity.content == "zip":
        return identity.directory is not None
    head = os.pread(fd, sniff.HEAD_BYTES, 0)
    return missing_in(fd, size, head, identity.content) is None


def _check_readable(path: Path, info: os.stat_result, code: ErrorCode) -> None:
    """A file whose mode lets only its owner (another user) read it would otherwise fail deep
    inside the converter with an error about the state folder; say what the user can fix."""
    try:
        os.close(open_regular(path))
    except PermissionError:
        raise JobFailure(
            code,
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
