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


SCAN_PAGE = (360, 144)  # points: a slip, not a sheet, so that OCR on the CPU takes seconds less


def scanned_pdf_bytes(text: str) -> bytes:
    """A one-page PDF whose text exists only as pixels, as a scanner writes it. The page is
    small: OCR's cost grows with the page's area, and no test needs a whole sheet of it."""
    import pymupdf

    width, height = SCAN_PAGE
    text_page = pymupdf.open()
    text_page.new_page(width=width, height=height).insert_text((24, 72), text, fontsize=12)
    pixmap = text_page[0].get_pixmap(dpi=100)
    document = pymupdf.open()
    document.new_page(width=width, height=height).insert_image(document[0].rect, pixmap=pixmap)
    data: bytes = document.tobytes()
    return data


PICTURE_COLOURS = ((200, 30, 30), (30, 160, 60), (40, 60, 200), (220, 180, 20))


def pdf_with_pictures(pictures: int = 1) -> bytes:
    """One page of text with ``pictures`` pictures (plain coloured rectangles, each a bitmap
    of its own) between its paragraphs, stacked down the page (four at most)."""
    import pymupdf

    document = pymupdf.open()
    page = document.new_page()
    page.insert_text((72, 90), "A report with figures.", fontsize=16)
    top = 130.0
    for number in range(pictures):
        page.insert_text((72, top), f"Paragraph {number + 1} comes before figure {number + 1}.")
        colour = PICTURE_COLOURS[number % len(PICTURE_COLOURS)]
        pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 160, 90), 0)
        pixmap.set_rect(pixmap.irect, colour)
        page.insert_image(pymupdf.Rect(72, top + 15, 312, top + 150), pixmap=pixmap)
        top += 170
    page.insert_text((72, top), "The last paragraph ends the report.")
    data: bytes = document.tobytes()
    document.close()
    return data
