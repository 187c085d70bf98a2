"""Pages with no text layer (a scan) on a backend without OCR: their Markdown is empty, and an
empty ``.md`` beside a "succeeded" sidecar looked like a good conversion. The backend says so in
the sidecar's warnings (``no_text_found:k/n``, k pages of n without text) and the daemon logs
it with the fix, OCR with the docling backend."""

from __future__ import annotations

from typing import Any

PREFIX = "no_text_found"
FIX = (
    'convert it with OCR: the docling backend (backend_strategy = "docling" or "auto") with '
    'ocr_mode = "auto", e.g. in a profile for a folder of scans; then drop the original again '
    "(paths.archive keeps it)"
)


def pages_without_text(document: Any) -> int:
    """Pages of an open PyMuPDF document whose text layer holds nothing but white space."""
    return sum(1 for page in document if not page.get_text("text").strip())


def warning(without_text: int, pages: int) -> tuple[str, ...]:
    """The sidecar warning, or none when every page has text."""
    return (f"{PREFIX}:{without_text}/{pages}",) if without_text else ()


def found(warnings: tuple[str, ...] | list[str]) -> tuple[int, int] | None:
    """(pages without text, pages) from a job's warnings, or None when it has no such warning."""
    for entry in warnings:
        name, _, counts = entry.partition(":")
        without, _, pages = counts.partition("/")
        if name == PREFIX and without.isdigit() and pages.isdigit():
            return int(without), int(pages)
    return None
