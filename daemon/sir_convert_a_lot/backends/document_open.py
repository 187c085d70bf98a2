"""The worker opens a file by its format (``formats``) before any backend sees it.

The format comes from the file's name; the supervisor has already checked that the bytes look
like it (``jobs.source_checks``). Each format gets the looks that make a hostile or broken file
fail here, with its own error, rather than deep inside a converter: a PDF ``pdf_open``'s, an
image ``image_open``'s (pages counted from the headers, no pixel decoded but the first page's),
a ZIP-based office file or e-book ``zip_open``'s (its unpacked size, every member's checksum,
no XML entity declared),
and a legacy binary format whether LibreOffice is there to read it (``libreoffice``). A name
without a known suffix is a PDF, as it always was.

A format docling reads without a model (office files, markup, e-mail) has no page count before
it is converted: it opens as one page, and the backend's ``page_count`` replaces that where
docling counts pages (a presentation's slides, a workbook's sheets).
"""

from __future__ import annotations

from dataclasses import dataclass

from sir_convert_a_lot.backends import image_open, libreoffice, zip_open
from sir_convert_a_lot.backends.pdf_open import OpenedPdf, open_pdf
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.formats import DocumentFormat, format_of_name
from sir_convert_a_lot.names import split_suffix


@dataclass
class OpenedDocument:
    """A file of any format but PDF, with the looks of its format passed. ``pages`` is an
    image's page count, 1 for a format without pages until docling counts them; ``max_pages``
    the limit it was opened under, for the converter that counts them."""

    format: DocumentFormat
    data: bytes
    name: str
    pages: int
    max_pages: int
    suffix: str = ""  # the name's suffix as the table knows it (".jpeg", ".docx")

    @property
    def models(self) -> bool:
        """Whether converting it runs the layout, table and OCR models (an image does)."""
        return self.format.models

    @property
    def warnings(self) -> tuple[str, ...]:
        return ()


Opened = OpenedPdf | OpenedDocument


def open_document(data: bytes, name: str, max_pages: int, max_file_bytes: int) -> Opened:
    """Open ``data`` as the format ``name`` says. Raises JobFailure."""
    found = format_of_name(name)
    if found is None or found.name == "pdf":
        return open_pdf(data, max_pages, name)
    if not data:
        raise JobFailure(
            ErrorCode.DOCUMENT_UNREADABLE,
            f"The file is empty; drop a complete copy of the {found.label}.",
            reason="empty_file",
        )
    suffix = split_suffix(name)[1].lower()
    content = found.suffixes[suffix]
    if found.legacy:
        libreoffice.require(found)
    pages = 1
    if found.name == "image":
        pages = image_open.count_pages(data, content, max_pages)
    elif content == "zip":
        zip_open.check(data, max_file_bytes, found.label, chapters_as_html=found.name == "epub")
    return OpenedDocument(found, data, name, pages, max_pages, suffix)
