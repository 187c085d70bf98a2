"""Which pages need OCR, decided page by page in the one pass (``ocr_mode = "auto"``).

A page whose own text layer holds real text is born digital and never pays for OCR. A page with
next to no text that images cover for the most part is a scan (or a photo of a page): it is read
by OCR, whole. The decision is made in front of the OCR model, after layout, from what docling
already parsed (the page's text cells and its bitmaps); nothing is converted twice.
A page with no text and no image (blank, or text drawn as outlines) is left as it is.
"""

from __future__ import annotations

from typing import Any

THIN_TEXT_CHARS = 120  # non-space characters of a page's own text below which it may be a scan
SCANNED_SHARE = 0.5  # the share of the page that images must cover for it to count as a scan


def needs_ocr(page: Any) -> bool:
    if _text_chars(page) >= THIN_TEXT_CHARS:
        return False
    return _image_share(page) >= SCANNED_SHARE


def _text_chars(page: Any) -> int:
    return sum(len("".join(str(cell.text).split())) for cell in page.cells)


def _image_share(page: Any) -> float:
    """The share of the page's area that its bitmaps cover (overlaps counted once per image,
    so a stack of images can count above its real cover: enough for telling scans apart)."""
    size = page.size
    backend = page._backend
    if size is None or backend is None or not size.width or not size.height:
        return 0.0
    covered = sum(rect.area() for rect in backend.get_bitmap_rects(scale=1))
    return min(1.0, float(covered) / float(size.width * size.height))
