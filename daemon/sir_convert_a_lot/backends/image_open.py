"""An image's pages counted, and its size checked, before any pixel of a later page is decoded.

docling reads an image as a document whose pages are its frames (a multi-page TIFF, an animated
WebP). Pillow reads each frame's size from its header, so the count and the sizes cost nothing:
the frames are walked one header at a time and the walk stops one past ``conversion.max_pages``,
so a 10,000-page TIFF fails ``too_many_pages`` after reading that many headers. A page over
``MAX_IMAGE_PIXELS`` (a decompression bomb: a few bytes that decode to gigabytes) fails
``payload_too_large`` before it is decoded. Only the first page is decoded here, so that a
truncated or corrupt single image fails ``document_unreadable`` at once; a later page of a
multi-page file that cannot be decoded is docling's to skip (the job then succeeds with the
warning ``docling_partial_success``). Pillow opens only the format the name promises: no other
of its decoders (EPS through Ghostscript, among them) ever sees the bytes.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Final

from sir_convert_a_lot.errors import ErrorCode, JobFailure

if TYPE_CHECKING:
    from PIL.Image import Image

MAX_IMAGE_PIXELS: Final = 89_478_485
"""Pixels (width x height) of one page: Pillow's default ``MAX_IMAGE_PIXELS`` and docling's
``DEFAULT_MAX_IMAGE_PIXELS`` (about 268 MB decoded to RGB), fixed here rather than read from
Pillow's global, which any library may change."""

PILLOW_FORMATS: Final = {
    "png": "PNG",
    "jpeg": "JPEG",
    "tiff": "TIFF",
    "bmp": "BMP",
    "webp": "WEBP",
}


def count_pages(data: bytes, content: str, max_pages: int) -> int:
    """The image's page count. Raises JobFailure (``too_many_pages``, ``payload_too_large``,
    ``document_unreadable``)."""
    from PIL import Image as Pillow

    try:
        image = Pillow.open(io.BytesIO(data), formats=[PILLOW_FORMATS[content]])
    except Pillow.DecompressionBombError:
        raise _too_large(None) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a broken header
        raise unreadable(exc) from None
    with image:
        pages = _walk(image, max_pages)
        _decode_first(image)
    return pages


def _walk(image: Image, max_pages: int) -> int:
    """Count the frames, checking each one's size, up to one past ``max_pages``."""
    pages = 0
    while True:
        _check_size(image.size)
        pages += 1
        if pages > max_pages:
            raise JobFailure(
                ErrorCode.TOO_MANY_PAGES,
                f"The image has more than {max_pages} pages, over this service's limit; split "
                "it into smaller files.",
                pages_over=max_pages,
                max_pages=max_pages,
            )
        try:
            image.seek(pages)
        except EOFError:
            return pages
        except Exception as exc:  # noqa: BLE001 - a broken frame chain is the file's fault
            raise unreadable(exc) from None


def _decode_first(image: Image) -> None:
    try:
        image.seek(0)
        image.load()
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
        raise unreadable(exc) from None


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise JobFailure(
            ErrorCode.DOCUMENT_UNREADABLE,
            "The image has a page without pixels; save or scan it again.",
            reason="empty_page",
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_large((width, height))


def _too_large(size: tuple[int, int] | None) -> JobFailure:
    shown = f" ({size[0]} x {size[1]} pixels)" if size else ""
    return JobFailure(
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"The image has a page too large to decode{shown}, over this service's limit of "
        f"{MAX_IMAGE_PIXELS} pixels a page; scan it at a lower resolution.",
        reason="image_too_large",
        max_pixels=MAX_IMAGE_PIXELS,
        **({"width": size[0], "height": size[1]} if size else {}),
    )


def unreadable(exc: BaseException) -> JobFailure:
    return JobFailure(
        ErrorCode.DOCUMENT_UNREADABLE,
        "The image is damaged or truncated and cannot be read; save or scan it again and drop "
        "the new copy.",
        reason="image_unreadable",
        parser="pillow",
        parser_message=f"{type(exc).__name__}: {exc}"[:300],
    )
