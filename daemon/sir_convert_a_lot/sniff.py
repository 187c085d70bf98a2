"""What a file's bytes are, whatever its name says: a PDF, an image, a ZIP (and which document
it holds), a legacy Office file, RTF, text, or something else.

A name is a promise the person at the share made; the bytes are the truth. The supervisor looks
at the first bytes (the magic each format starts with) and, for a ZIP, at its table of contents
(``zipdir``), so that a PDF named ``.docx`` or a spreadsheet named ``.docx`` is refused with a
sentence that says what it really is, before any converter sees it. Text formats (HTML,
Markdown, CSV, AsciiDoc, e-mail) have no magic: text is what starts with none of the binary
magics and holds no NUL byte (UTF-16 and UTF-32 text, which is full of NULs, has its BOM).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final, Literal

from sir_convert_a_lot import zipdir
from sir_convert_a_lot.formats import Content, FormatName

Found = Content | Literal["unknown"]
"""What bytes can be found to be; ``email`` is never found (an e-mail is text)."""

HEAD_BYTES: Final = 4096
PDF_MAGIC: Final = b"%PDF-"
PDF_WINDOW: Final = 1024  # the PDF spec tolerates junk before the header; readers look this far

IMAGES: Final[frozenset[Content]] = frozenset({"png", "jpeg", "tiff", "bmp", "webp"})

_MAGICS: Final[tuple[tuple[bytes, Content], ...]] = (
    (PDF_MAGIC, "pdf"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),
    (zipdir.LOCAL_MAGIC, "zip"),
    (b"{\\rtf", "rtf"),
)
_BOMS: Final = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_BMP_HEADERS: Final = frozenset({12, 40, 52, 56, 64, 108, 124})  # the DIB header's known sizes

# A ZIP's document kind: OOXML by its part folders, OpenDocument and EPUB by their mimetype.
_OOXML: Final[tuple[tuple[str, FormatName], ...]] = (
    ("word/", "docx"),
    ("ppt/", "pptx"),
    ("xl/", "xlsx"),
)
_MIMETYPES: Final[dict[str, FormatName]] = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/epub+zip": "epub",
}


def content_of_head(head: bytes, promised: Content | None = None) -> Found:
    """What the first bytes say. ``%PDF-`` after some junk (allowed in a PDF) is a PDF when
    the name promises one or the head is not text; a text file that only mentions ``%PDF-`` in
    its first kilobyte stays text."""
    for magic, content in _MAGICS:
        if head.startswith(magic):
            return content
    if _is_bmp(head):
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if PDF_MAGIC in head[:PDF_WINDOW] and (promised == "pdf" or not is_text(head)):
        return "pdf"
    return "text" if is_text(head) else "unknown"


def is_text(head: bytes) -> bool:
    return head.startswith(_BOMS) or b"\x00" not in head


def _is_bmp(head: bytes) -> bool:
    """``BM`` alone starts too many text files ("BMW,..."): the DIB header size must be known."""
    if head[:2] != b"BM" or len(head) < 18:
        return False
    return struct.unpack("<I", head[14:18])[0] in _BMP_HEADERS


def fits(promised: Content, found: Found) -> bool:
    """Whether bytes found to be ``found`` keep the promise of a name. Any image content fits
    any image name (a PNG saved as ``.jpg`` is common, and the image reader goes by the bytes);
    an e-mail is text."""
    if promised in IMAGES:
        return found in IMAGES
    if promised == "email":
        return found == "text"
    return found == promised


@dataclass(frozen=True)
class Identity:
    """What a file holds: its ``content``, and for a whole ZIP the document ``kind`` inside
    (None: a ZIP of no kind we know, or one whose directory is not readable)."""

    content: Found
    kind: FormatName | None = None
    directory: zipdir.Directory | None = None


def identify(fd: int, size: int, promised: Content | None = None) -> Identity:
    """The content of an open file and, for a ZIP, what it holds. Reads the head and, for a ZIP
    only, its end record and central directory; nothing is decompressed."""
    head = os.pread(fd, HEAD_BYTES, 0)
    content = content_of_head(head, promised)
    if content != "zip":
        return Identity(content)
    end = zipdir.find_end(fd, size)
    if isinstance(end, str):
        return Identity(content)
    directory = zipdir.read_directory(fd, end)
    return Identity(content, _zip_kind(fd, directory), directory)


def _zip_kind(fd: int, directory: zipdir.Directory) -> FormatName | None:
    mimetype = zipdir.first_stored_text(fd, "mimetype")
    if mimetype is not None and mimetype in _MIMETYPES:
        return _MIMETYPES[mimetype]
    if "[Content_Types].xml" not in directory.names:
        return None
    for folder, kind in _OOXML:
        if any(name.startswith(folder) for name in directory.names):
            return kind
    return None
