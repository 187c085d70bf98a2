"""Documents of every accepted format but PDF (harness/pdfs.py has those), made in memory so no
test depends on a sample file, and their hostile twins: ZIP bombs, XML external entities and
entity expansion, a PNG claiming billions of pixels, TIFF chains that loop or run past the end.

The office files come from python-docx, python-pptx and openpyxl (docling's own dependencies);
ODF files, EPUB and e-mail are put together by hand (a ZIP of the few parts a reader needs,
``email.message``); TIFF chains byte by byte, as no library writes a broken one."""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Collection, Mapping
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

LOCAL_FILE_TEXT = "SECRET-8c1f0d7e-only-in-a-local-file"
"""What a hostile document tries to pull into its Markdown from a local file."""

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
"""How a legacy Office file (.doc, .xls, .ppt) begins."""


# -- office files ------------------------------------------------------------------------------


def docx_bytes(
    text: str = "A paragraph of the document.", *, heading: str = "Title", paragraphs: int = 1
) -> bytes:
    """A heading, ``text`` and a small table; ``paragraphs`` > 1 repeats ``text``, numbered so
    that the copies do not pack to nothing."""
    import docx

    document = docx.Document()
    document.add_heading(heading, 1)
    for number in range(paragraphs):
        document.add_paragraph(text if paragraphs == 1 else f"{text} {number + 1}")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "name"
    table.cell(0, 1).text = "value"
    table.cell(1, 0).text = "alpha"
    table.cell(1, 1).text = "1"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx_bytes(slides: int = 3) -> bytes:
    import pptx

    presentation = pptx.Presentation()
    for number in range(slides):
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = f"Slide {number + 1}"
        slide.placeholders[1].text = f"Point {number + 1}"
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def xlsx_bytes(text: str = "alpha") -> bytes:
    """A workbook of two sheets, ``text`` in the first."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["name", "value"])
    sheet.append([text, 1])
    workbook.create_sheet("Second").append(["beta", 2])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


_ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" '
    'office:version="1.3"'
)
_ODF_BODIES = {
    "text": '<office:text><text:h text:outline-level="1">Title</text:h>'
    "<text:p>{text}</text:p></office:text>",
    "spreadsheet": '<office:spreadsheet><table:table table:name="Sheet1"><table:table-row>'
    "<table:table-cell><text:p>{text}</text:p></table:table-cell></table:table-row>"
    "</table:table></office:spreadsheet>",
    "presentation": '<office:presentation><draw:page draw:name="page1"><draw:frame>'
    "<draw:text-box><text:p>{text}</text:p></draw:text-box></draw:frame></draw:page>"
    "</office:presentation>",
}


def odf_bytes(
    kind: str = "text", text: str = "An OpenDocument paragraph.", prolog: str = ""
) -> bytes:
    """An OpenDocument file (``kind``: text, spreadsheet, presentation) of the parts a reader
    needs, ``mimetype`` first and stored as the spec says; ``prolog`` goes before the content's
    root element (a DOCTYPE)."""
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}'
        f"<office:document-content {_ODF_NS}><office:body>"
        f"{_ODF_BODIES[kind].format(text=text)}</office:body></office:document-content>"
    )
    mimetype = f"application/vnd.oasis.opendocument.{kind}"
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
        'manifest:version="1.3"><manifest:file-entry manifest:full-path="/" '
        f'manifest:media-type="{mimetype}"/><manifest:file-entry manifest:full-path="content.xml" '
        'manifest:media-type="text/xml"/></manifest:manifest>'
    )
    return zip_bytes(
        {"mimetype": mimetype, "content.xml": content, "META-INF/manifest.xml": manifest},
        stored=("mimetype",),
    )


def epub_bytes(
    body: str = "<h1>Chapter</h1><p>An e-book paragraph.</p>", prolog: str = ""
) -> bytes:
    """An EPUB 3 of one chapter whose XHTML body is ``body``."""
    container = (
        '<?xml version="1.0"?><container version="1.0" '
        'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
        '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
        "</rootfiles></container>"
    )
    opf = (
        '<?xml version="1.0" encoding="UTF-8"?><package xmlns="http://www.idpf.org/2007/opf" '
        'version="3.0" unique-identifier="id"><metadata '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">book</dc:identifier>'
        "<dc:title>Book</dc:title><dc:language>en</dc:language></metadata><manifest>"
        '<item id="c1" href="chapter.xhtml" media-type="application/xhtml+xml"/></manifest>'
        '<spine><itemref idref="c1"/></spine></package>'
    )
    chapter = (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<html '
        f'xmlns="http://www.w3.org/1999/xhtml"><head><title>Chapter</title></head><body>{body}'
        "</body></html>"
    )
    return zip_bytes(
        {
            "mimetype": "application/epub+zip",
            "META-INF/container.xml": container,
            "OEBPS/content.opf": opf,
            "OEBPS/chapter.xhtml": chapter,
        },
        stored=("mimetype",),
    )


def eml_bytes(html: str = "<p>An e-mail's <b>HTML</b> body.</p>", text: str = "") -> bytes:
    message = EmailMessage()
    message["From"] = "Alice <alice@example.org>"
    message["To"] = "Bob <bob@example.org>"
    message["Subject"] = "Quarterly figures"
    message["Date"] = "Mon, 02 Mar 2026 10:00:00 +0000"
    message.set_content(text or "The plain text part.")
    message.add_alternative(html, subtype="html")
    return bytes(message)


MARKUP = {
    "html": b"<html><body><h1>Title</h1><p>A web page.</p><table><tr><td>a</td><td>1</td></tr>"
    b"</table></body></html>",
    "md": b"# Title\n\nA Markdown paragraph.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
    "csv": b"name,value\nalpha,1\nbeta,2\n",
    "asciidoc": b"= Title\n\nAn AsciiDoc paragraph.\n",
}


# -- images ------------------------------------------------------------------------------------


def _page_image(text: str, size: tuple[int, int]) -> Image.Image:
    """A white page with black text, as Pillow draws it, large enough for OCR to read."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 60), text, fill="black", font=ImageFont.load_default(size=40))
    return image


def image_bytes(
    kind: str = "PNG",
    text: str = "Scanned words",
    pages: int = 1,
    size: tuple[int, int] = (600, 200),
) -> bytes:
    """An image file of ``kind`` (Pillow's format name, any case: png, jpeg, tiff, bmp, webp);
    ``pages`` > 1 needs TIFF (or WEBP)."""
    frames = [_page_image(f"{text} {n + 1}" if pages > 1 else text, size) for n in range(pages)]
    out = io.BytesIO()
    extra: dict[str, Any] = {"save_all": True, "append_images": frames[1:]} if pages > 1 else {}
    frames[0].save(out, format=kind.upper(), **extra)
    return out.getvalue()


def tiff_chain(
    pages: int,
    *,
    order: str = "<",
    last_next: int | None = None,
    strip_at: int | None = None,
) -> bytes:
    """A classic TIFF of ``pages`` 1x1 grey pages, written directory by directory (Pillow would
    take minutes for ten thousand), each page's pixel before its directory. ``last_next``: where
    the last directory points (a loop, or past the end); ``strip_at``: where the last page's
    pixel is said to lie."""
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


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels with next to no data (a bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


# -- one whole sample of each ---------------------------------------------------------------

SAMPLES: dict[str, Callable[[], bytes]] = {
    "png": lambda: image_bytes("png"),
    "jpeg": lambda: image_bytes("jpeg"),
    "tiff": lambda: image_bytes("tiff"),
    "bmp": lambda: image_bytes("bmp"),
    "webp": lambda: image_bytes("webp"),
    "ole": lambda: OLE_MAGIC + bytes(504),
    "rtf": lambda: b"{\\rtf1\\ansi Hello.}",
    "docx": docx_bytes,
    "xlsx": xlsx_bytes,
    "pptx": pptx_bytes,
    "odt": lambda: odf_bytes("text"),
    "ods": lambda: odf_bytes("spreadsheet"),
    "odp": lambda: odf_bytes("presentation"),
    "epub": epub_bytes,
}
"""A whole file of each content ``sniff`` tells by its bytes (a ZIP by the document it holds),
but PDF (``harness.pdfs``) and text, keyed by the name ``sniff`` gives it."""

ZIPPED = ("docx", "xlsx", "pptx", "odt", "ods", "odp", "epub")
"""The keys of ``SAMPLES`` that are ZIPs."""


# -- ZIPs and ZIP surgery ----------------------------------------------------------------------


def zip_bytes(
    members: Mapping[str, str | bytes],
    method: int = zipfile.ZIP_DEFLATED,
    stored: Collection[str] = (),
) -> bytes:
    """A ZIP of ``members`` packed by ``method``, those named in ``stored`` left unpacked."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as archive:
        for name, data in members.items():
            kind = zipfile.ZIP_STORED if name in stored else method
            archive.writestr(name, data, compress_type=kind)
    return out.getvalue()


def rewrite_member(data: bytes, member: str, change: Callable[[bytes], bytes]) -> bytes:
    """``data``, a ZIP, with ``member``'s bytes passed through ``change``."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            body = source.read(info)
            target.writestr(info.filename, change(body) if info.filename == member else body)
    return out.getvalue()


def zip_bomb(data: bytes, members: int = 4, gibibytes: int = 1) -> bytes:
    """``data``'s members plus ``members`` members of ``gibibytes`` GiB of zeros each, with true
    sizes and checksums (about 1 MB packed a GiB): unpacked, it is gigabytes. Written by hand,
    each member's deflate stream one 16 MiB block repeated, so it takes a second to make."""
    block = b"\x00" * (1 << 24)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    repeats = gibibytes * 64
    zeros = piece * repeats + packer.flush()
    crc = 0
    for _ in range(repeats):
        crc = zlib.crc32(block, crc)
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        entries = [
            (
                info.filename,
                _deflate(source.read(info)),
                zlib.crc32(source.read(info)),
                info.file_size,
            )
            for info in source.infolist()
        ]
    entries += [(f"word/media/zeros{n}.bin", zeros, crc, repeats << 24) for n in range(members)]
    return _raw_zip(entries)


def _deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def _raw_zip(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    """A ZIP of (name, deflated data, CRC-32, unpacked size) entries, without ZIP64."""
    out = bytearray()
    directory = bytearray()
    for name, packed, crc, size in entries:
        raw = name.encode()
        at = len(out)
        fields = (20, 0, 8, 0, 0x21, crc, len(packed), size, len(raw))
        out += struct.pack("<4s5H3I2H", b"PK\x03\x04", *fields, 0) + raw + packed
        directory += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, at)
        directory += raw
    count = len(entries)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, count, count, len(directory), len(out), 0)
    return bytes(out + directory + end)


# -- XML attacks -------------------------------------------------------------------------------


def external_entity(root: str, path: str) -> str:
    """A DOCTYPE for ``root`` whose entity ``xxe`` is the local file at ``path``."""
    return f'<!DOCTYPE {root} [<!ENTITY xxe SYSTEM "file://{path}">]>'


def laughs(root: str, levels: int = 9) -> str:
    """A DOCTYPE whose entity ``lol9`` expands to 10**levels copies of ``lol`` (a billion)."""
    defined = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels + 1):
        defined.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    return f"<!DOCTYPE {root} [{''.join(defined)}]>"


def inject(data: bytes, member: str, doctype: str, marker: str, reference: str) -> bytes:
    """``data``, a ZIP, with ``doctype`` after ``member``'s XML declaration and ``marker`` in
    its text replaced by the entity ``reference``."""

    def change(xml: bytes) -> bytes:
        text = xml.decode("utf-8")
        declaration = re.match(r"<\?xml[^>]*\?>\s*", text)
        at = declaration.end() if declaration else 0
        text = text[:at] + doctype + text[at:]
        assert marker in text, (member, marker)
        return text.replace(marker, reference).encode("utf-8")

    return rewrite_member(data, member, change)
