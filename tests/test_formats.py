"""The one table of accepted formats: every name's suffixes, what bytes each promises, and how a
file name is looked up in it."""

from __future__ import annotations

import os

import pytest

from sir_convert_a_lot.formats import (
    BY_SUFFIX,
    FORMAT_NAMES,
    FORMATS,
    accepted_suffixes,
    content_of_name,
    format_of_name,
    runs_models,
)
from sir_convert_a_lot.sniff import IMAGES

NON_UTF8 = os.fsdecode(b"caf\xe9.pdf")  # Latin-1 "café.pdf" from an old Samba client


def test_the_contract_s_formats_are_all_there_in_its_order() -> None:
    assert FORMAT_NAMES == (
        "pdf", "image", "docx", "pptx", "xlsx", "odt", "ods", "odp", "html", "md", "csv",
        "asciidoc", "epub", "eml", "doc", "ppt", "xls", "rtf",
    )  # fmt: skip


def test_every_suffix_belongs_to_one_format_and_is_written_as_looked_up() -> None:
    listed = [suffix for f in FORMATS for suffix in f.suffixes]
    assert len(listed) == len(set(listed)) == len(BY_SUFFIX)
    assert all(s.startswith(".") and s == s.lower() and len(s) > 1 for s in listed)


def test_only_pdf_and_images_run_the_models() -> None:
    assert [f.name for f in FORMATS if f.models] == ["pdf", "image"]
    assert {BY_SUFFIX[s].name for s in (".png", ".jpeg", ".tiff")} == {"image"}
    assert runs_models("scan.TIF") and not runs_models("notes.md")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "pdf"),
        ("a.PDF", "pdf"),
        ("a.Pdf", "pdf"),
        (NON_UTF8, "pdf"),
        ("Letter.DOCX", "docx"),
        ("photo.jpeg", "image"),
        ("report.final.xlsx", "xlsx"),
        ("noext", None),
        (".pdf", None),  # a hidden name, not a suffix
        ("report.pdf.txt", None),
        ("reportpdf", None),
        ("report.pdfx", None),
        ("archive.zip", None),
        ("talk.key", None),
    ],
)
def test_a_name_says_its_format_by_its_last_suffix(name: str, expected: str | None) -> None:
    found = format_of_name(name)
    assert (found.name if found else None) == expected


def test_a_name_promises_bytes() -> None:
    assert content_of_name("photo.JPG") == "jpeg"
    assert content_of_name("slides.pptx") == "zip"
    assert content_of_name("mail.eml") == "email"
    assert content_of_name("old.xls") == "ole"
    assert content_of_name("notes.txt") is None
    images = {content_of_name(f"x{s}") for s in format_of_name("x.png").suffixes}  # type: ignore[union-attr]
    assert images == IMAGES


def test_accepted_suffixes_follow_the_table_s_order() -> None:
    assert accepted_suffixes(["md", "pdf"]) == [".pdf", ".md", ".markdown"]
    assert accepted_suffixes([]) == []
