"""The document formats the daemon accepts, as one table every layer reads.

A format is what ``conversion.formats`` names (contract section 5). Each has the file-name
suffixes it is dropped under, the look its bytes must have (``Content``: how ``sniff`` recognises
it and how ``source_file`` knows it has arrived whole), docling's name for it, and whether it runs
models. ``pdf`` and ``image`` run the layout, table and OCR models, on the GPU under the lock;
every other format is read by docling's model-free backends, needs no GPU and reports
``acceleration_used: "none"``. The legacy binary formats go through LibreOffice, which a host may
lack. The table sits at the bottom, below ``config``, so a profile's list is checked without
importing a converter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from sir_convert_a_lot.names import split_suffix

FormatName = Literal[
    "pdf",
    "image",
    "docx",
    "pptx",
    "xlsx",
    "odt",
    "ods",
    "odp",
    "html",
    "md",
    "csv",
    "asciidoc",
    "epub",
    "eml",
    "doc",
    "ppt",
    "xls",
    "rtf",
]

Content = Literal["pdf", "png", "jpeg", "tiff", "bmp", "webp", "zip", "ole", "rtf", "text", "email"]
"""How a file's bytes look: its magic, and the structure that says it arrived whole."""


@dataclass(frozen=True)
class DocumentFormat:
    """One entry of ``conversion.formats``."""

    name: FormatName
    label: str  # for messages: what a person at the share calls it
    suffixes: Mapping[str, Content]  # lower-case suffix, with its dot -> the bytes it holds
    docling: str  # docling's ``InputFormat`` value
    models: bool = False  # layout, tables and OCR run (on the GPU under the lock)
    legacy: bool = False  # converted through LibreOffice (``soffice``), which a host may lack


def _format(
    name: FormatName,
    label: str,
    suffixes: Mapping[str, Content],
    docling: str | None = None,
    *,
    models: bool = False,
    legacy: bool = False,
) -> DocumentFormat:
    return DocumentFormat(name, label, suffixes, docling or name, models, legacy)


FORMATS: Final[tuple[DocumentFormat, ...]] = (
    _format("pdf", "PDF", {".pdf": "pdf"}, models=True),
    _format(
        "image",
        "image (PNG, JPEG, TIFF, BMP, WebP)",
        {
            ".png": "png",
            ".jpg": "jpeg",
            ".jpeg": "jpeg",
            ".tif": "tiff",
            ".tiff": "tiff",
            ".bmp": "bmp",
            ".webp": "webp",
        },
        models=True,
    ),
    _format("docx", "Word document", {".docx": "zip"}),
    _format("pptx", "PowerPoint presentation", {".pptx": "zip"}),
    _format("xlsx", "Excel workbook", {".xlsx": "zip"}),
    _format("odt", "OpenDocument text", {".odt": "zip"}),
    _format("ods", "OpenDocument spreadsheet", {".ods": "zip"}),
    _format("odp", "OpenDocument presentation", {".odp": "zip"}),
    _format("html", "web page", {".html": "text", ".htm": "text", ".xhtml": "text"}),
    _format("md", "Markdown text", {".md": "text", ".markdown": "text"}),
    _format("csv", "CSV table", {".csv": "text"}),
    _format("asciidoc", "AsciiDoc text", {".adoc": "text", ".asciidoc": "text"}),
    _format("epub", "EPUB e-book", {".epub": "zip"}),
    _format("eml", "e-mail", {".eml": "email"}, docling="email"),
    _format("doc", "legacy Word document", {".doc": "ole"}, legacy=True),
    _format("ppt", "legacy PowerPoint presentation", {".ppt": "ole"}, legacy=True),
    _format("xls", "legacy Excel workbook", {".xls": "ole"}, legacy=True),
    _format("rtf", "Rich Text document", {".rtf": "rtf"}, legacy=True),
)

FORMAT_NAMES: Final[tuple[FormatName, ...]] = tuple(f.name for f in FORMATS)
BY_NAME: Final[Mapping[str, DocumentFormat]] = {f.name: f for f in FORMATS}
BY_SUFFIX: Final[Mapping[str, DocumentFormat]] = {
    suffix: f for f in FORMATS for suffix in f.suffixes
}


def format_of_name(file_name: str) -> DocumentFormat | None:
    """The format a file's name says it holds (its last suffix, any case), or None."""
    return BY_SUFFIX.get(split_suffix(file_name)[1].lower())


def content_of_name(file_name: str) -> Content | None:
    """The bytes a file's name promises: ``.jpg`` -> ``jpeg``, ``.docx`` -> ``zip``."""
    found = format_of_name(file_name)
    if found is None:
        return None
    return found.suffixes[split_suffix(file_name)[1].lower()]


def accepted_suffixes(names: Iterable[str]) -> list[str]:
    """The suffixes of the formats ``names``, in table order, for a message."""
    wanted = set(names)
    return [suffix for f in FORMATS if f.name in wanted for suffix in f.suffixes]


def runs_models(file_name: str) -> bool:
    """Whether converting this file runs the layout, table and OCR models."""
    found = format_of_name(file_name)
    return found is None or found.models
