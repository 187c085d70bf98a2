"""The worker's side of the checks: the PDF parsed with PyMuPDF, unencrypted, with pages within
the limit and a page tree MuPDF can walk, plus the looks at its resources that docling-parse
cannot survive (a resource cycle, no page with an area).

This is the untrusted side of the boundary: parsing a hostile file runs only in the worker
process, where it can take down nothing but the worker. The supervisor's checks, which never
parse, are ``jobs.source_checks``. MuPDF is not thread-safe and the worker converts several
documents at once, so every use of it there holds ``MUPDF``.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sir_convert_a_lot.backends.file_faults import broken_file
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from sir_convert_a_lot.source_file import MAGIC_WINDOW, PDF_MAGIC, no_pdf_header, open_regular

MUPDF = threading.RLock()  # held around every PyMuPDF call in the worker


def read_source(path: Path, max_file_bytes: int) -> bytes:
    """The bytes the worker parses, read through the same regular-file open as the checks."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_file_bytes + 1)
    if len(data) > max_file_bytes:
        raise JobFailure(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"The file is over this service's limit of {max_file_bytes} bytes.",
            max_file_bytes=max_file_bytes,
        )
    return data


@dataclass
class OpenedPdf:
    """A parsed, unencrypted PDF with pages. ``document`` is a pymupdf.Document; ``name`` the
    file's own name (no folder), for what a backend records of the document's origin."""

    data: bytes
    document: Any
    pages: int
    repaired: bool
    name: str = "document.pdf"

    @property
    def warnings(self) -> tuple[str, ...]:
        return ("pdf_repaired",) if self.repaired else ()


def open_pdf(data: bytes, max_pages: int, name: str = "document.pdf") -> OpenedPdf:
    """Parse with PyMuPDF and apply the PDF-level checks. Raises JobFailure."""
    if not data:
        raise JobFailure(ErrorCode.PDF_UNREADABLE, "The file is empty.", reason="empty_file")
    if PDF_MAGIC not in data[:MAGIC_WINDOW]:
        raise no_pdf_header()
    with MUPDF:
        return _parse(data, max_pages, name)


def _parse(data: bytes, max_pages: int, name: str) -> OpenedPdf:
    import pymupdf

    try:
        document = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - MuPDF raises many types for broken files
        raise JobFailure(
            ErrorCode.PDF_UNREADABLE,
            "The PDF is damaged beyond repair and cannot be opened; export or scan it again.",
            reason="open_failed",
            parser_message=str(exc)[:300],
        ) from None
    if document.needs_pass:
        document.close()
        raise JobFailure(
            ErrorCode.PDF_ENCRYPTED,
            "The PDF is protected by a password; save an unprotected copy and drop that instead.",
            reason="password_required",
        )
    pages = _page_count(document)
    encryption = (document.metadata or {}).get("encryption")
    if pages == 0 and encryption:
        # Opened without a password, yet nothing decrypts to a page: not a truncated file.
        document.close()
        raise JobFailure(
            ErrorCode.PDF_ENCRYPTED,
            f"The PDF is encrypted ({encryption}) in a way that leaves no readable page; save "
            "an unencrypted copy and drop that instead.",
            reason="unreadable_encryption",
            encryption=str(encryption),
        )
    if pages == 0:
        document.close()
        raise JobFailure(
            ErrorCode.PDF_UNREADABLE,
            "The PDF has no readable pages; it may be truncated, so drop a complete copy.",
            reason="zero_pages",
        )
    if pages > max_pages:
        document.close()
        raise JobFailure(
            ErrorCode.TOO_MANY_PAGES,
            f"The PDF has {pages} pages, over this service's limit of {max_pages}; "
            "split it into smaller files.",
            pages=pages,
            max_pages=max_pages,
        )
    _load_every_page(document, pages)
    repaired = bool(document.is_repaired)
    return OpenedPdf(data=data, document=document, pages=pages, repaired=repaired, name=name)


def _page_count(document: Any) -> int:
    """MuPDF counts pages by walking the page tree; a count it cannot believe (``/Count``
    missing or wrong) is the file's fault."""
    try:
        return int(document.page_count)
    except Exception as exc:
        failure = broken_file(exc, "page_tree_broken", what=_PAGE_TREE)
        if failure is None:
            raise
        document.close()
        raise failure from None


def _load_every_page(document: Any, pages: int) -> None:
    """Load each page object once, so that a page tree MuPDF cannot walk (a cycle, a /Kids
    entry that is no page) fails here as ``pdf_unreadable`` rather than halfway through a
    backend as an internal error. It reads only the page dictionaries, not their contents."""
    for number in range(pages):
        try:
            document.load_page(number)
        except Exception as exc:
            failure = broken_file(exc, "page_tree_broken", what=_PAGE_TREE)
            if failure is None:
                raise
            failure.details["page"] = number + 1
            document.close()
            raise failure from None


_PAGE_TREE = "list of pages (its page tree)"


_INDIRECT_REF = re.compile(r"(\d+)\s+\d+\s+R\b")
_DRAWN_RESOURCES = ("Resources/XObject", "Resources/Pattern")
_ON_PATH, _DONE = 1, 2
_PARENT_DEPTH = 64


def resource_cycle(data: bytes) -> int | None:
    """The xref of a form XObject or tiling pattern whose resources lead back to itself (form A
    draws form B, which draws A), or None. MuPDF renders such a file by cutting the loop;
    docling-parse follows it until the worker runs out of stack or memory. Only the resource
    dictionaries are read, never the content streams. Iterative, so a long chain in a hostile
    file cannot exhaust Python's recursion limit."""
    import pymupdf

    with MUPDF, pymupdf.open(stream=data, filetype="pdf") as document:
        state: dict[int, int] = {}
        for number in range(document.page_count):
            for start in _drawn(document, _resources_holder(document, document[number].xref)):
                found = _cycle_from(document, start, state)
                if found is not None:
                    return found
    return None


def _cycle_from(document: Any, start: int, state: dict[int, int]) -> int | None:
    """Depth-first from ``start``; the first object met again while still on the path."""
    if state.get(start) == _DONE:
        return None
    state[start] = _ON_PATH
    stack = [(start, iter(_drawn(document, start)))]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            state[node] = _DONE
            stack.pop()
        elif state.get(child) == _ON_PATH:
            return child
        elif child not in state:
            state[child] = _ON_PATH
            stack.append((child, iter(_drawn(document, child))))
    return None


def _resources_holder(document: Any, page_xref: int) -> int:
    """The page, or the nearest page-tree node above it that holds the inherited /Resources."""
    return _holder(document, page_xref, "Resources")


def _holder(document: Any, page_xref: int, key: str) -> int:
    """The page, or the nearest page-tree node above it that holds the inheritable ``key``."""
    xref = page_xref
    for _ in range(_PARENT_DEPTH):
        if document.xref_get_key(xref, key)[0] != "null":
            return xref
        kind, parent = document.xref_get_key(xref, "Parent")
        if kind != "xref":
            break
        xref = int(parent.split()[0])
    return page_xref


def no_page_has_an_area(data: bytes) -> bool:
    """True when every page's visible box (its /CropBox within its /MediaBox, both as the file
    states them) is empty. MuPDF then draws the pages at a default size; docling-parse cannot
    draw any of them and the conversion fails (pdf.js boundingBox_invalid.pdf). A file with
    only some such pages still converts there, with those pages missing, so it passes."""
    import pymupdf

    with MUPDF, pymupdf.open(stream=data, filetype="pdf") as document:
        return document.page_count > 0 and all(
            _visible_area(document, document[n].xref) == 0.0 for n in range(document.page_count)
        )


def _visible_area(document: Any, page_xref: int) -> float | None:
    """Area of /CropBox within /MediaBox as stated in the file; None when unstated or not
    four numbers (then MuPDF's default size applies and the page counts as usable)."""
    media = _box(document, page_xref, "MediaBox")
    if media is None:
        return None
    crop = _box(document, page_xref, "CropBox") or media
    width = min(media[2], crop[2]) - max(media[0], crop[0])
    height = min(media[3], crop[3]) - max(media[1], crop[1])
    return max(width, 0.0) * max(height, 0.0)


def _box(document: Any, page_xref: int, key: str) -> tuple[float, float, float, float] | None:
    kind, value = document.xref_get_key(_holder(document, page_xref, key), key)
    if kind == "xref":
        kind, value = "array", document.xref_object(int(value.split()[0]), compressed=True)
    if kind != "array":
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in value.strip("[] ").split())
    except ValueError:
        return None
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _drawn(document: Any, xref: int) -> list[int]:
    """The objects ``xref``'s content can draw: its /XObject and /Pattern resources."""
    found: list[int] = []
    for key in _DRAWN_RESOURCES:
        kind, value = document.xref_get_key(xref, key)
        if kind == "xref":
            value = document.xref_object(int(value.split()[0]), compressed=True)
        elif kind != "dict":
            continue
        found.extend(int(number) for number in _INDIRECT_REF.findall(value))
    return found
