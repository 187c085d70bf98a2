"""Small, valid PDFs made on the spot, so that no test or tool depends on a sample file."""

from __future__ import annotations

from pathlib import Path


def make_pdf(path: Path, pages: int = 1, text: str = "Hello from a test page.") -> Path:
    """A small, valid PDF with ``pages`` pages of text, written in one go."""
    import pymupdf

    document = pymupdf.open()
    for number in range(pages):
        page = document.new_page()
        page.insert_text((72, 72), f"{text} Page {number + 1}.", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(document.tobytes())
    document.close()
    return path


def pdf_bytes(pages: int = 1, text: str = "Hello from a test page.") -> bytes:
    import pymupdf

    document = pymupdf.open()
    for number in range(pages):
        document.new_page().insert_text((72, 72), f"{text} Page {number + 1}.", fontsize=12)
    data: bytes = document.tobytes()
    document.close()
    return data
