"""What a file's bytes are, whatever its name says: each format's magic, the document inside a
ZIP, text against binary, and files that are two formats at once."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.documents import SAMPLES, ZIPPED, docx_bytes, image_bytes, zip_bytes
from harness.pdfs import pdf_bytes
from sir_convert_a_lot.sniff import Identity, content_of_head, fits, identify


def _identify(tmp_path: Path, data: bytes, promised: str | None = None) -> Identity:
    path = tmp_path / "sample"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return identify(fd, len(data), promised)  # type: ignore[arg-type]
    finally:
        os.close(fd)


MAKERS: dict[str, Callable[[], bytes]] = {
    "pdf": pdf_bytes,
    "text": lambda: b"# A heading\n\nSome *Markdown*.\n",
    **{content: make for content, make in SAMPLES.items() if content not in ZIPPED},
}


@pytest.mark.parametrize("content", sorted(MAKERS))
def test_each_format_is_known_by_its_bytes(tmp_path: Path, content: str) -> None:
    assert _identify(tmp_path, MAKERS[content]()).content == content


@pytest.mark.parametrize("kind", ZIPPED)
def test_a_zip_says_which_document_it_holds(tmp_path: Path, kind: str) -> None:
    found = _identify(tmp_path, SAMPLES[kind]())
    assert (found.content, found.kind) == ("zip", kind)


def test_a_plain_zip_holds_no_document_kind(tmp_path: Path) -> None:
    found = _identify(tmp_path, zip_bytes({"a.pdf": pdf_bytes(), "b.txt": b"x"}))
    assert (found.content, found.kind) == ("zip", None)
    assert found.directory is not None and found.directory.names == ("a.pdf", "b.txt")


def test_a_zip_whose_end_has_not_arrived_has_no_kind_yet(tmp_path: Path) -> None:
    data = docx_bytes()
    found = _identify(tmp_path, data[: len(data) // 2])
    assert (found.content, found.kind, found.directory) == ("zip", None, None)


def test_openxml_parts_without_the_content_types_part_are_no_office_document(
    tmp_path: Path,
) -> None:
    found = _identify(tmp_path, zip_bytes({"word/document.xml": b"<w:document/>"}))
    assert found.kind is None


@pytest.mark.parametrize(
    "text",
    [
        b"<!DOCTYPE html><html><body>Hi</body></html>",
        b"name,count\napples,3\n",
        b"= AsciiDoc title\n\nA paragraph.\n",
        b"From: a@example.org\r\nSubject: hi\r\n\r\nBody\r\n",
        "\ufeffUTF-16 text with its BOM".encode("utf-16"),
        b"BMW,Audi,VW\n1,2,3\n",  # starts like a BMP's "BM"
        "caf\u00e9 in Latin-1".encode("latin-1"),
    ],
)
def test_text_is_what_has_no_magic_and_no_nul(text: bytes) -> None:
    assert content_of_head(text) == "text"


def test_binary_of_no_known_format_is_unknown() -> None:
    assert content_of_head(b"\x7fELF\x02\x01\x01\x00" + bytes(64)) == "unknown"


# -- polyglots: a file that is two formats at once is what it starts as ----------------------


def test_a_pdf_with_a_zip_appended_is_a_pdf(tmp_path: Path) -> None:
    assert _identify(tmp_path, pdf_bytes() + zip_bytes({"x.txt": b"x"})).content == "pdf"


def test_a_zip_whose_first_member_is_a_stored_pdf_is_a_zip(tmp_path: Path) -> None:
    data = zip_bytes({"inner.pdf": pdf_bytes()}, method=zipfile.ZIP_STORED)
    assert b"%PDF-" in data[:1024]
    assert _identify(tmp_path, data, "pdf").content == "zip"


def test_a_jpeg_with_a_zip_appended_is_a_jpeg(tmp_path: Path) -> None:
    assert _identify(tmp_path, image_bytes("jpeg") + docx_bytes()).content == "jpeg"


def test_pdf_magic_after_junk_is_a_pdf_only_where_a_pdf_is_promised_or_the_head_is_binary() -> None:
    prose = b"Notes on the format: every file starts with %PDF-1.7 and ends with %%EOF.\n"
    assert content_of_head(prose) == "text"
    assert content_of_head(prose, "pdf") == "pdf"
    assert content_of_head(b"\x00junk\x00" + pdf_bytes()) == "pdf"


# -- which bytes keep which name's promise ----------------------------------------------------


@pytest.mark.parametrize(
    ("promised", "found", "expected"),
    [
        ("jpeg", "png", True),  # any image fits any image name
        ("tiff", "webp", True),
        ("png", "pdf", False),
        ("email", "text", True),
        ("text", "unknown", False),
        ("zip", "zip", True),
        ("pdf", "zip", False),
        ("ole", "rtf", False),
    ],
)
def test_which_content_fits_a_name(promised: str, found: str, expected: bool) -> None:
    assert fits(promised, found) is expected  # type: ignore[arg-type]
