"""The worker opens a file by the format its name says, before any converter sees it: images
counted by their headers, ZIP-based files held to their unpacked size and checked whole, the
legacy formats only where LibreOffice is there, and PDFs as they always were."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from harness.documents import (
    docx_bytes,
    epub_bytes,
    external_entity,
    image_bytes,
    inject,
    laughs,
    odf_bytes,
    png_claiming,
    pptx_bytes,
    tiff_chain,
    xlsx_bytes,
    zip_bomb,
    zip_bytes,
)
from sir_convert_a_lot.backends import image_open, libreoffice, zip_open
from sir_convert_a_lot.backends.document_open import OpenedDocument, open_document
from sir_convert_a_lot.backends.pdf_open import OpenedPdf
from sir_convert_a_lot.errors import ErrorCode, JobFailure
from tests.helpers import pdf_bytes

MAX_PAGES = 2000
MAX_BYTES = 50 * 1024 * 1024


def _open(data: bytes, name: str, max_pages: int = MAX_PAGES) -> OpenedDocument | OpenedPdf:
    return open_document(data, name, max_pages, MAX_BYTES)


def _failure(data: bytes, name: str, max_pages: int = MAX_PAGES) -> JobFailure:
    with pytest.raises(JobFailure) as caught:
        _open(data, name, max_pages)
    return caught.value


def test_a_pdf_and_a_name_without_a_known_suffix_open_as_a_pdf() -> None:
    for name in ("report.pdf", "REPORT.PDF", "no-suffix", ""):
        opened = _open(pdf_bytes(text="hello"), name)
        assert isinstance(opened, OpenedPdf) and opened.pages == 1 and opened.name == name


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("letter.docx", docx_bytes()),
        ("deck.pptx", pptx_bytes()),
        ("book.xlsx", xlsx_bytes()),
        ("note.odt", odf_bytes("text")),
        ("sheet.ods", odf_bytes("spreadsheet")),
        ("slides.odp", odf_bytes("presentation")),
        ("novel.epub", epub_bytes()),
        ("page.HTML", b"<p>hi</p>"),
        ("notes.md", b"# hi"),
        ("mail.eml", b"Subject: hi\n\nbody"),
    ],
)
def test_a_format_without_models_opens_as_one_page_of_its_format(name: str, data: bytes) -> None:
    opened = _open(data, name)
    assert isinstance(opened, OpenedDocument)
    assert opened.pages == 1 and not opened.models and opened.max_pages == MAX_PAGES
    assert name.lower().endswith(opened.suffix) and opened.data == data


def test_an_empty_file_of_any_other_format_is_unreadable() -> None:
    for name in ("a.docx", "a.png", "a.html", "a.eml"):
        failure = _failure(b"", name)
        assert failure.code is ErrorCode.DOCUMENT_UNREADABLE
        assert failure.details["reason"] == "empty_file"


# -- images ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name"),
    [("PNG", "a.png"), ("JPEG", "a.jpg"), ("BMP", "a.bmp"), ("WEBP", "a.webp"), ("TIFF", "a.tif")],
)
def test_an_image_is_one_page_and_runs_the_models(kind: str, name: str) -> None:
    opened = _open(image_bytes(kind), name)
    assert isinstance(opened, OpenedDocument)
    assert opened.pages == 1 and opened.models and opened.format.name == "image"


def test_a_multi_page_tiff_has_a_page_per_frame() -> None:
    opened = _open(image_bytes("TIFF", pages=3), "scan.tiff")
    assert opened.pages == 3


def test_a_ten_thousand_page_tiff_fails_too_many_pages_after_reading_the_limits_headers() -> None:
    data = tiff_chain(10_000)
    started = time.monotonic()
    failure = _failure(data, "scan.tif")
    assert failure.code is ErrorCode.TOO_MANY_PAGES
    assert failure.details == {"pages_over": MAX_PAGES, "max_pages": MAX_PAGES}
    assert time.monotonic() - started < 5.0  # Pillow's n_frames alone takes ~4 s for all 10,000
    assert _open(tiff_chain(300), "scan.tif", max_pages=300).pages == 300


def test_an_image_whose_header_claims_too_many_pixels_is_refused_before_decoding() -> None:
    tracemalloc.start()
    try:
        for width, height in ((20_000, 20_000), (100_000, 100_000)):  # above Pillow's 1x and 2x
            failure = _failure(png_claiming(width, height), "bomb.png")
            assert failure.code is ErrorCode.PAYLOAD_TOO_LARGE
            assert failure.details["reason"] == "image_too_large"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024  # 400 million pixels would be 1.2 GB decoded


def test_a_truncated_or_corrupt_image_is_unreadable() -> None:
    png = image_bytes("PNG")
    jpeg = image_bytes("JPEG")
    for data, name in (
        (png[: len(png) // 2], "cut.png"),
        (jpeg[: len(jpeg) // 2], "cut.jpg"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "garbage.png"),
        (png, "png-named.jpg"),  # Pillow opens only the format the name says
    ):
        failure = _failure(data, name)
        assert failure.code is ErrorCode.DOCUMENT_UNREADABLE, name
        assert failure.details["reason"] == "image_unreadable"


def test_the_pixel_limit_is_docling_s_own() -> None:
    from docling.datamodel.backend_options import DEFAULT_MAX_IMAGE_PIXELS

    assert image_open.MAX_IMAGE_PIXELS == DEFAULT_MAX_IMAGE_PIXELS


# -- ZIP-based ---------------------------------------------------------------------------------


def test_a_zip_bomb_docx_fails_payload_too_large_without_unpacking() -> None:
    bomb = zip_bomb(docx_bytes(), members=4, gibibytes=1)
    assert len(bomb) < 5 * 1024 * 1024
    tracemalloc.start()
    started = time.monotonic()
    try:
        failure = _failure(bomb, "bomb.docx")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert failure.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert failure.details["reason"] == "unpacked_too_large"
    assert failure.details["unpacked_bytes"] > 4 * 1024**3
    assert time.monotonic() - started < 2.0 and peak < 5 * len(bomb)


def test_a_zip_whose_members_claim_less_than_they_hold_is_unreadable() -> None:
    """zipfile unpacks no more of a member than its entry declares, then fails its checksum."""
    honest = zip_bytes({"word/document.xml": b"x" * 100_000})
    lying = bytearray(honest)
    entry = lying.rfind(b"PK\x01\x02")
    lying[entry + 24 : entry + 28] = (10).to_bytes(4, "little")  # uncompressed size: 10 bytes
    failure = _failure(bytes(lying), "lying.docx")
    assert failure.code is ErrorCode.DOCUMENT_UNREADABLE
    assert failure.details["reason"] == "archive_corrupt"


def test_too_many_members_fail_before_the_directory_is_read() -> None:
    archive = zip_bytes({f"m{n}": b"" for n in range(zip_open.MAX_MEMBERS + 1)})
    failure = _failure(archive, "many.xlsx")
    assert failure.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert failure.details["reason"] == "too_many_members"


def test_a_truncated_or_corrupt_office_file_is_unreadable() -> None:
    good = docx_bytes()
    for data, reason in (
        (good[: len(good) // 2], "no_end_of_archive"),
        (b"PK\x03\x04" + b"\x00" * 100, "no_end_of_archive"),
        (good.replace(b"PK\x03\x04", b"PK\x03\x05", 1), "archive_corrupt"),
    ):
        failure = _failure(data, "broken.docx")
        assert failure.code is ErrorCode.DOCUMENT_UNREADABLE
        assert failure.details["reason"] == reason


@pytest.mark.parametrize(
    ("name", "data", "member", "root", "marker"),
    [
        ("x.docx", docx_bytes(text="MARKER"), "word/document.xml", "w:document", "MARKER"),
        ("x.xlsx", xlsx_bytes("MARKER"), "xl/worksheets/sheet1.xml", "worksheet", "MARKER"),
        ("x.odt", odf_bytes(text="MARKER"), "content.xml", "office:document-content", "MARKER"),
        ("x.epub", epub_bytes(), "OEBPS/content.opf", "package", "<dc:title>Book"),
    ],
)
def test_an_xml_part_that_declares_entities_is_refused(
    name: str, data: bytes, member: str, root: str, marker: str
) -> None:
    keep = marker if marker.startswith("<") else ""
    for doctype, reference in (
        (external_entity(root, "/etc/passwd"), keep + "&xxe;"),
        (laughs(root), keep + "&lol9;"),
    ):
        failure = _failure(inject(data, member, doctype, marker, reference), name)
        assert failure.code is ErrorCode.DOCUMENT_UNREADABLE
        assert failure.details == {"reason": "xml_entities", "member": member}


def test_an_e_book_chapter_may_declare_entities_since_it_is_read_as_html() -> None:
    chapter = epub_bytes(body="<p>a&nbsp;b</p>", prolog='<!DOCTYPE html [<!ENTITY nbsp "&#160;">]>')
    assert isinstance(_open(chapter, "old.epub"), OpenedDocument)


# -- legacy formats ----------------------------------------------------------------------------


def test_a_legacy_format_without_libreoffice_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("DOCLING_LIBREOFFICE_CMD", raising=False)
    monkeypatch.setattr(libreoffice, "MACOS_SOFFICE", str(tmp_path / "none"))
    assert libreoffice.command() is None
    for name in ("old.doc", "old.ppt", "old.xls", "old.rtf"):
        failure = _failure(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, name)
        assert failure.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE
        assert failure.details["reason"] == "converter_missing"
        assert failure.details["missing"] == "LibreOffice (soffice)"
        assert "LibreOffice (soffice)" in failure.message and "." in failure.message


def test_a_legacy_format_opens_where_libreoffice_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    soffice = tmp_path / "soffice"
    soffice.write_text("#!/bin/sh\n")
    soffice.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("DOCLING_LIBREOFFICE_CMD", raising=False)
    assert libreoffice.command() == str(soffice)
    opened = _open(b"{\\rtf1 hello}", "old.rtf")
    assert isinstance(opened, OpenedDocument) and opened.format.legacy


def test_libreoffice_is_looked_for_where_docling_looks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from docling.backend.docx.drawingml.utils import get_libreoffice_cmd

    for name in ("soffice", "libreoffice"):
        tool = tmp_path / name
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("DOCLING_LIBREOFFICE_CMD", raising=False)
    assert libreoffice.command() == get_libreoffice_cmd() == str(tmp_path / "libreoffice")
    monkeypatch.setenv("DOCLING_LIBREOFFICE_CMD", "/opt/lo/soffice")
    assert libreoffice.command() == get_libreoffice_cmd() == "/opt/lo/soffice"
