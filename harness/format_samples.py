"""Small documents of every accepted format, made on the spot: images by Pillow, office files by
python-docx, openpyxl and python-pptx (docling's own dependencies), OpenDocument and EPUB by
``zipfile``, and TIFFs by hand where a test needs a chain the libraries never write (a loop, a
directory past the end, ten thousand pages)."""

from __future__ import annotations

import io
import struct
import zipfile
from typing import Any

IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP", "webp": "WEBP"}


def image_bytes(content: str, pages: int = 1, size: tuple[int, int] = (64, 48)) -> bytes:
    """An image of ``content`` (``png``, ``jpeg``, ``tiff``, ``bmp``, ``webp``); a TIFF may have
    several pages."""
    from PIL import Image, ImageDraw

    frames = []
    for page in range(pages):
        frame = Image.new("RGB", size, (255, 255, 255))
        ImageDraw.Draw(frame).text((4, 4), f"p{page + 1}", fill=(0, 0, 0))
        frames.append(frame)
    out = io.BytesIO()
    extra: dict[str, Any] = {"save_all": True, "append_images": frames[1:]} if pages > 1 else {}
    frames[0].save(out, format=IMAGE_FORMATS[content], **extra)
    return out.getvalue()


def docx_bytes(text: str = "A paragraph of a Word document.", paragraphs: int = 1) -> bytes:
    import docx

    document = docx.Document()
    for number in range(paragraphs):
        document.add_paragraph(f"{text} {number + 1}")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx_bytes() -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["name", "count"])
    sheet.append(["apples", 3])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def pptx_bytes() -> bytes:
    import pptx

    presentation = pptx.Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[1])
    slide.shapes.title.text = "A slide"
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


_ODF = {
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "epub": "application/epub+zip",
}


def packaged_bytes(kind: str) -> bytes:
    """An OpenDocument file or an EPUB as their specs lay them out: ``mimetype`` first, stored."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), _ODF[kind], zipfile.ZIP_STORED)
        if kind == "epub":
            archive.writestr("META-INF/container.xml", "<container/>", zipfile.ZIP_DEFLATED)
        else:
            archive.writestr("content.xml", "<office:document-content/>", zipfile.ZIP_DEFLATED)
            archive.writestr("META-INF/manifest.xml", "<manifest/>", zipfile.ZIP_DEFLATED)
    return out.getvalue()


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def tiff_chain(
    pages: int,
    *,
    order: str = "<",
    last_next: int | None = None,
    strip_at: int | None = None,
) -> bytes:
    """A classic TIFF of ``pages`` 1x1 grey pages, each page's pixel before its directory.
    ``last_next``: where the last directory points (a loop, or past the end); ``strip_at``:
    where the last page's pixel is said to lie."""
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    out = bytearray(magic + b"\0\0\0\0")
    previous_next_at = 4
    for page in range(pages):
        pixel_at = len(out)
        out += b"\x80\x00"
        ifd_at = len(out)
        struct.pack_into(order + "I", out, previous_next_at, ifd_at)
        strip = strip_at if strip_at is not None and page == pages - 1 else pixel_at
        entries = [
            (256, 3, 1, 1),  # width
            (257, 3, 1, 1),  # height
            (258, 3, 1, 8),  # bits per sample
            (259, 3, 1, 1),  # no compression
            (262, 3, 1, 1),  # black is zero
            (273, 4, 1, strip),  # strip offsets
            (277, 3, 1, 1),  # samples per pixel
            (278, 3, 1, 1),  # rows per strip
            (279, 4, 1, 1),  # strip byte counts
        ]
        out += struct.pack(order + "H", len(entries))
        for tag, kind, count, value in entries:
            packed = struct.pack(order + ("H2x" if kind == 3 else "I"), value)
            out += struct.pack(order + "HHI", tag, kind, count) + packed
        previous_next_at = len(out)
        out += b"\0\0\0\0"
    if last_next is not None:
        struct.pack_into(order + "I", out, previous_next_at, last_next)
    return bytes(out)
