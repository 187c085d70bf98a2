"""A ZIP-based file (DOCX, PPTX, XLSX, ODT, ODS, ODP, EPUB) checked before a reader unpacks it.

A ZIP bomb is a small file that unpacks to gigabytes: either its members say so (a member of
4 GB compressed to a few kilobytes, or thousands of entries that all point at one such member),
or they claim less than they hold. Python's ``zipfile``, which python-docx, python-pptx,
openpyxl, odfdo and docling's EPUB reader all use, never unpacks more of a member than its
entry in the central directory declares (past that it fails the member's checksum). So the sum
of the declared sizes bounds what any of them can unpack, and it is held to
``conversion.max_file_bytes`` (contract section 5: for ZIP-based formats also their unpacked
size), failing ``payload_too_large`` with reason ``unpacked_too_large``. The number of entries
is read from the end record before the directory is parsed (each parsed entry costs memory),
and held to ``MAX_MEMBERS``. Then every member is unpacked once, in pieces, and thrown away:
a corrupt or truncated archive fails ``document_unreadable`` here, whatever reader would meet
it later.

While unpacking, no member may declare an XML entity (``<!ENTITY``, in UTF-8 or UTF-16): none
of these formats needs one, and the readers differ in what they make of them. python-docx,
python-pptx and docling's own parsers leave entities unresolved, openpyxl and docling's EPUB
reader refuse them (defusedxml), but odfdo parses ODF with lxml's defaults, which expand internal
entities (libxml2 stops a billion laughs, not a thousand-fold one) and fail outside docling's
error handling on an undefined one. Such a file fails ``document_unreadable`` (reason
``xml_entities``) before any reader sees it. An e-book's XHTML chapters are exempt: docling reads
them as HTML (BeautifulSoup), which expands nothing, and an old EPUB may declare ``&nbsp;`` so.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import Final

from sir_convert_a_lot.errors import ErrorCode, JobFailure

MAX_MEMBERS: Final = 10_000
"""Entries one archive may have. A DOCX or XLSX holds tens to hundreds; docling's own EPUB
reader stops at 1,000 content files."""

_END: Final = b"PK\x05\x06"  # end of central directory record
_END_SIZE: Final = 22
_END64_LOCATOR: Final = b"PK\x06\x07"
_END64: Final = b"PK\x06\x06"
_MAX_COMMENT: Final = 0xFFFF
_CHUNK: Final = 1 << 20
_DECLARATIONS: Final = tuple(
    "<!ENTITY".encode(codec) for codec in ("utf-8", "utf-16-le", "utf-16-be")
)
_OVERLAP: Final = max(len(d) for d in _DECLARATIONS) - 1
_READ_AS_HTML: Final = (".xhtml", ".html", ".htm")  # an e-book's chapters (see above)


def check(data: bytes, max_file_bytes: int, label: str, *, chapters_as_html: bool = False) -> None:
    """Raise JobFailure unless ``data`` is a whole ZIP archive that unpacks within the limit and
    declares no XML entity (``chapters_as_html``: an e-book, whose XHTML chapters may)."""
    entries = declared_entries(data)
    if entries is None:
        raise _unreadable(label, "no_end_of_archive", "the end of its ZIP archive is missing")
    if entries > MAX_MEMBERS:
        raise JobFailure(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"The {label} holds {entries} files inside, over this service's limit of "
            f"{MAX_MEMBERS}.",
            reason="too_many_members",
            members=entries,
            max_members=MAX_MEMBERS,
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            unpacked = sum(member.file_size for member in members)
            if unpacked > max_file_bytes:
                raise JobFailure(
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    f"The {label} unpacks to {unpacked} bytes, over this service's limit of "
                    f"{max_file_bytes} bytes.",
                    reason="unpacked_too_large",
                    unpacked_bytes=unpacked,
                    max_file_bytes=max_file_bytes,
                )
            for member in members:
                scan = not (chapters_as_html and member.filename.lower().endswith(_READ_AS_HTML))
                if _read_through(archive, member, scan=scan):
                    raise JobFailure(
                        ErrorCode.DOCUMENT_UNREADABLE,
                        f"The {label} declares XML entities, which such files never need and "
                        "which could read local files or grow without end; save it again from "
                        "the program that made it.",
                        reason="xml_entities",
                        member=member.filename[:200],
                    )
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        raise _unreadable(label, "archive_corrupt", str(exc)) from None
    except RuntimeError as exc:  # zipfile: a member needs a password
        raise _unreadable(label, "archive_encrypted", str(exc)) from None


def _read_through(archive: zipfile.ZipFile, member: zipfile.ZipInfo, *, scan: bool) -> bool:
    """Unpack one member in pieces, for its checksum (at most its declared size); whether it
    declares an XML entity, when ``scan``."""
    if member.is_dir():
        return False
    tail = b""
    with archive.open(member) as stream:
        while chunk := stream.read(_CHUNK):
            if scan:
                window = tail + chunk
                if any(declaration in window for declaration in _DECLARATIONS):
                    return True
                tail = window[-_OVERLAP:]
    return False


def declared_entries(data: bytes) -> int | None:
    """The number of entries the archive's end record declares (ZIP64's where it defers to it),
    or None when there is no end record in the last 64 KiB and a record's length."""
    at = data.rfind(_END, max(0, len(data) - _END_SIZE - _MAX_COMMENT))
    if at < 0 or len(data) - at < _END_SIZE:
        return None
    (total,) = struct.unpack_from("<H", data, at + 10)
    if total != 0xFFFF:
        return int(total)
    locator = at - 20
    if locator < 0 or data[locator : locator + 4] != _END64_LOCATOR:
        return int(total)
    (offset,) = struct.unpack_from("<Q", data, locator + 8)
    if offset + 56 > len(data) or data[offset : offset + 4] != _END64:
        return None
    (total64,) = struct.unpack_from("<Q", data, offset + 32)
    return int(total64)


def _unreadable(label: str, reason: str, message: str) -> JobFailure:
    return JobFailure(
        ErrorCode.DOCUMENT_UNREADABLE,
        f"The {label} is damaged or truncated and cannot be opened; save it again and drop the "
        "new copy.",
        reason=reason,
        parser="zipfile",
        parser_message=message[:300],
    )
