"""Has a document arrived whole, by its own structure: each format whole, cut at several points,
preallocated with zeros, and the odd cases real files bring (padding after a JPEG's end, a TIFF
whose chain loops or points past the end, ZIP64). Asked as intake and the claim-time checks ask,
through ``source_file.missing_part`` with the name the file was dropped under."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.documents import (
    OLE_MAGIC,
    docx_bytes,
    epub_bytes,
    image_bytes,
    odf_bytes,
    xlsx_bytes,
    zip_bytes,
)
from harness.pdfs import pdf_bytes
from sir_convert_a_lot import zipdir
from sir_convert_a_lot.completeness import (
    JPEG_END_NOT_ARRIVED,
    PNG_END_NOT_ARRIVED,
    SHORTER_THAN_DECLARED,
)
from sir_convert_a_lot.source_file import EMPTY, HEAD_NOT_ARRIVED, missing_part
from sir_convert_a_lot.tiff_ifds import DATA_NOT_ARRIVED, IFD_NOT_ARRIVED

ZIP_ENDS = {zipdir.NO_END, zipdir.DIRECTORY_NOT_ARRIVED}

# name -> (a whole file, the reasons a cut-off copy may give)
CASES: dict[str, tuple[Callable[[], bytes], set[str]]] = {
    "report.docx": (docx_bytes, ZIP_ENDS),
    "sheet.xlsx": (xlsx_bytes, ZIP_ENDS),
    "text.odt": (lambda: odf_bytes("text"), ZIP_ENDS),
    "book.epub": (epub_bytes, ZIP_ENDS),
    "scan.png": (lambda: image_bytes("png", size=(300, 200)), {PNG_END_NOT_ARRIVED}),
    "photo.jpg": (lambda: image_bytes("jpeg", size=(300, 200)), {JPEG_END_NOT_ARRIVED}),
    "fax.tif": (
        lambda: image_bytes("tiff", pages=3, size=(120, 80)),
        {IFD_NOT_ARRIVED, DATA_NOT_ARRIVED},
    ),
    "paint.bmp": (lambda: image_bytes("bmp", size=(120, 80)), {SHORTER_THAN_DECLARED}),
    "web.webp": (lambda: image_bytes("webp", size=(300, 200)), {SHORTER_THAN_DECLARED}),
}


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_whole_file_has_arrived(tmp_path: Path, name: str) -> None:
    make, _ = CASES[name]
    assert missing_part(_write(tmp_path, name, make())) is None


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, -1])
def test_a_cut_off_copy_has_not_arrived(tmp_path: Path, name: str, fraction: float) -> None:
    make, reasons = CASES[name]
    data = make()
    # -1: all but the last few bytes (Pillow pads a TIFF with four after its last strip)
    cut = len(data) - 5 if fraction < 0 else int(len(data) * fraction)
    assert missing_part(_write(tmp_path, name, data[:cut])) in reasons


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_preallocated_copy_waits_until_its_last_bytes_are_written(
    tmp_path: Path, name: str
) -> None:
    """Windows Explorer sets the full size first: zeros, then the data from the front."""
    make, reasons = CASES[name]
    data = make()
    path = _write(tmp_path, name, bytes(len(data)))
    assert missing_part(path) == HEAD_NOT_ARRIVED
    half = len(data) // 2
    if name.endswith((".bmp", ".webp")):
        return  # their size is declared up front: zeros at the end look like pixels
    path.write_bytes(data[:half] + bytes(len(data) - half))
    assert missing_part(path) in reasons
    path.write_bytes(data)
    assert missing_part(path) is None


@pytest.mark.parametrize("name", [*sorted(CASES), "notes.md", "page.html", "old.doc"])
def test_an_empty_file_has_not_arrived(tmp_path: Path, name: str) -> None:
    assert missing_part(_write(tmp_path, name, b"")) == EMPTY


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("notes.md", b"# Half a heading"),
        ("table.csv", b"a,b\n1,"),
        ("mail.eml", b"From: a@example.org\r\nSubj"),
        ("old.doc", OLE_MAGIC + bytes(100)),
        ("letter.rtf", b"{\\rtf1\\ansi Hal"),
    ],
)
def test_text_legacy_office_and_rtf_wait_for_stability_alone(
    tmp_path: Path, name: str, data: bytes
) -> None:
    assert missing_part(_write(tmp_path, name, data)) is None


def test_bytes_of_another_format_than_the_name_have_nothing_to_wait_for(tmp_path: Path) -> None:
    """A half PDF named .docx is refused at the claim, at once, not after the incomplete wait."""
    data = pdf_bytes(pages=3)
    assert missing_part(_write(tmp_path, "report.docx", data[: len(data) // 2])) is None


def test_a_png_saved_as_jpg_waits_for_its_own_end(tmp_path: Path) -> None:
    data = image_bytes("png", size=(300, 200))
    assert missing_part(_write(tmp_path, "photo.jpg", data[:-20])) == PNG_END_NOT_ARRIVED
    assert missing_part(_write(tmp_path, "photo.jpg", data)) is None


def test_the_name_given_wins_over_the_path_s_own(tmp_path: Path) -> None:
    """The claimed copy in the state folder has no suffix; the original name says the format."""
    data = docx_bytes()
    path = _write(tmp_path, "source", data[: len(data) // 2])
    assert missing_part(path, "report.docx") in ZIP_ENDS


@pytest.mark.parametrize("padding", [b"\x00" * 300, b"\xff" * 16, b"\xff\xff\x00\x00"])
def test_a_jpeg_padded_after_its_end_has_arrived(tmp_path: Path, padding: bytes) -> None:
    assert missing_part(_write(tmp_path, "cam.jpg", image_bytes("jpeg") + padding)) is None


def test_a_png_with_bytes_after_iend_has_arrived(tmp_path: Path) -> None:
    assert missing_part(_write(tmp_path, "shot.png", image_bytes("png") + b"trailer" * 20)) is None


def test_a_zip_whose_directory_is_a_hole_has_not_arrived(tmp_path: Path) -> None:
    """Parallel SMB writes can deliver the end record before the directory it points at."""
    data = bytearray(docx_bytes())
    directory = data.rindex(b"PK\x01\x02", 0, data.index(b"PK\x05\x06"))
    first = data.index(b"PK\x01\x02")
    data[first : directory + 46] = bytes(directory + 46 - first)
    assert missing_part(_write(tmp_path, "holed.docx", bytes(data))) == zipdir.DIRECTORY_NOT_ARRIVED


def test_a_zip64_archive_is_read_through_its_zip64_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 16)  # zipfile writes ZIP64 records past it
    data = zip_bytes({"[Content_Types].xml": b"<Types/>" * 8, "word/document.xml": b"x" * 100})
    assert b"PK\x06\x06" in data
    path = _write(tmp_path, "big.docx", data)
    assert missing_part(path) is None
    assert missing_part(_write(tmp_path, "cut.docx", data[:-30])) in ZIP_ENDS


def test_a_bmp_without_a_declared_size_waits_for_stability_alone(tmp_path: Path) -> None:
    data = bytearray(image_bytes("bmp"))
    data[2:6] = bytes(4)
    assert missing_part(_write(tmp_path, "old.bmp", bytes(data[:-10]))) is None
